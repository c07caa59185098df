"""A payment's writes as single statements on PostgreSQL, sent in autocommit.

A state change is a compare-and-set UPDATE plus the events that explain it; a new payment
is the QR claim, the payment row and its first event. In a transaction that is BEGIN, two or
three statements and COMMIT: four or five round trips, each with its share of driver and
SQLAlchemy work, on every step of every payment. PostgreSQL says the same in one
data-modifying WITH statement, atomic on its own (all of it commits or none of it), so it is
sent in autocommit with no BEGIN or COMMIT. The conditions are the same as in the
transaction: the events are inserted from the UPDATE's RETURNING (nothing is inserted when
the status did not match), and the payment from the claim's RETURNING (nothing when the code
was already used or has expired). The WITH's parts all run exactly once, in the order the
events are listed, so event ids keep the order of the steps they record.

The statements are built with SQLAlchemy (from the models' tables, once per shape) and sent
as plain SQL on the driver connection of `Database.hot_read` (`driver_sql`): a pooled
SQLAlchemy execution cost several times what the statement itself does, on every step of
every payment.

SQLite has no data-modifying WITH; `sim_trustly.tpas.payments` runs the same statements there in
one write transaction (`Database.core_write`).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    CTE,
    Select,
    Table,
    Update,
    bindparam,
    insert,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import psycopg
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.selectable import SelectBase

from sim_trustly.models import PaymentEvent, QrTokenRow

_EVENTS = cast(Table, PaymentEvent.__table__)
_TOKENS = cast(Table, QrTokenRow.__table__)
_EVENT_COLUMNS = ("payment_id", "at", "kind", "detail")


_DIALECT = psycopg.dialect()  # type: ignore[no-untyped-call]
_PYFORMAT_PARAM = re.compile(r"%\((\w+)\)s")


@lru_cache(maxsize=256)
def driver_sql(statement: ClauseElement) -> tuple[str, dict[str, Any]]:
    """`statement` as PostgreSQL SQL with `:name` parameters (for `Database.hot_read`), and the
    values of the parameters the statement carries itself (the expected states, the `+ 1`).

    Compiled once per statement; the casts SQLAlchemy renders for PostgreSQL stay in the SQL,
    so the server knows every parameter's type. Values are sent as the driver adapts them:
    instants must be aware (they are: the clock's), as `UtcDateTime` would require.
    """
    compiled = statement.compile(dialect=_DIALECT)
    sql = _PYFORMAT_PARAM.sub(r":\1", compiled.string).replace("%%", "%")
    carried = {name: value for name, value in compiled.params.items() if value is not None}
    return sql, carried


def event_params(events: list[tuple[str, str]]) -> dict[str, str]:
    """The `kind_<n>` and `detail_<n>` parameters of `events` ((kind, JSON detail) pairs)."""
    params: dict[str, str] = {}
    for n, (kind, detail) in enumerate(events):
        params[f"kind_{n}"] = kind
        params[f"detail_{n}"] = detail
    return params


def _event_rows(source: CTE, count: int) -> SelectBase:
    """`count` event rows for the payment id `source` returned, at `:event_at`."""
    at = bindparam("event_at", type_=_EVENTS.c.at.type)
    rows: list[Select[Any]] = [
        select(source.c.id.label("payment_id"), at.label("at"),
               bindparam(f"kind_{n}", type_=_EVENTS.c.kind.type).label("kind"),
               bindparam(f"detail_{n}", type_=_EVENTS.c.detail.type).label("detail"))
        .select_from(source)
        for n in range(count)]
    return rows[0] if count == 1 else union_all(*rows)


def _log_events(source: CTE, count: int) -> CTE:
    return insert(_EVENTS).from_select(_EVENT_COLUMNS, _event_rows(source, count)).cte("logged")


@lru_cache(maxsize=128)
def moved_with_events(cas: Update, event_count: int) -> Select[Any]:
    """`cas` (an UPDATE ... RETURNING every payments column) and `event_count` events, as one
    statement whose rows are the UPDATE's (none when the compare-and-set did not match)."""
    moved = cas.cte("moved")
    if event_count == 0:
        return select(*moved.c)
    return select(*moved.c).add_cte(_log_events(moved, event_count))


@lru_cache(maxsize=8)
def claimed_and_created(payments: Table, event_count: int) -> Select[Any]:
    """Claim `:claimed_code` (unused, not expired at `:now`) and store the payment whose
    columns are the `new_<column>` parameters, with its events, as one statement.

    Its one row is the claimed code; no row means nothing was claimed nor stored.
    """
    claimed = (update(_TOKENS)
               .where(_TOKENS.c.code == bindparam("claimed_code"), _TOKENS.c.used_at.is_(None),
                      _TOKENS.c.expires_at > bindparam("now", type_=_TOKENS.c.used_at.type))
               .values(used_at=bindparam("now", type_=_TOKENS.c.used_at.type))
               .returning(_TOKENS.c.code).cte("claimed"))
    values = select(*(bindparam(f"new_{column.key}", type_=column.type).label(column.key)
                      for column in payments.c)).select_from(claimed)
    created = (insert(payments).from_select([column.key for column in payments.c], values)
               .returning(payments.c.id).cte("created"))
    statement = select(claimed.c.code).add_cte(created)
    return statement.add_cte(_log_events(created, event_count)) if event_count else statement
