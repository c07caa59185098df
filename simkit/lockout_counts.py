"""Failed-authentication counts both sims keep: one atomic upsert per failure, a window, a lockout.

sim_trustly counts failed Basic logins per (accessId, source) and sim_cms failed client
authentications per (client id, source); the counting itself is the same and lives here. A
table of counts has the caller's key column, `source`, `failures`, `window_start` and
`locked_until`. Each failure is one INSERT ... ON CONFLICT DO UPDATE, so concurrent failures
are counted exactly (no read-then-write), and a count whose window or lockout has ended starts
again at 1 in the same statement.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, case, literal, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from simkit.sqltypes import UtcDateTime


def ended(table: Table, now: datetime, window_s: int) -> ColumnElement[bool]:
    """A count that is over at `now`: its window ended without a lockout, or its lockout ended."""
    at = literal(now, UtcDateTime())
    cutoff = literal(now - timedelta(seconds=window_s), UtcDateTime())
    return or_(
        and_(table.c.locked_until.is_(None), table.c.window_start <= cutoff),
        and_(table.c.locked_until.is_not(None), table.c.locked_until <= at),
    )


def failure_upsert(
    session: Session, table: Table, key: tuple[str, str], source: str, now: datetime, *,
    threshold: int, window_s: int, lockout_s: int,
) -> Any:
    """The statement counting one failure of `key` (column name, value) from `source`,
    returning the count and the lockout it earned (`failures`, `locked_until`)."""
    column, value = key
    at = literal(now, UtcDateTime())
    until = literal(now + timedelta(seconds=lockout_s), UtcDateTime())
    stale = ended(table, now, window_s)
    counted = case((stale, 1), else_=table.c.failures + 1)
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    insert = dialect.insert(table).values(
        {column: value, "source": source, "failures": 1, "window_start": now,
         "locked_until": now + timedelta(seconds=lockout_s) if threshold <= 1 else None},
    )
    return insert.on_conflict_do_update(
        index_elements=[table.c[column], table.c.source],
        set_={
            "failures": counted,
            "window_start": case((stale, at), else_=table.c.window_start),
            "locked_until": case(
                (counted == threshold, until),
                (stale, literal(None, UtcDateTime())),
                else_=table.c.locked_until,
            ),
        },
    ).returning(table.c.failures, table.c.locked_until)


def retry_after(locked_until: datetime, now: datetime) -> int:
    """Whole seconds until a lockout ends (at least 1), for a Retry-After header."""
    return max(1, math.ceil((locked_until - now).total_seconds()))
