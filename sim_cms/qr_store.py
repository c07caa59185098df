"""The QR acquisition's SQL: Core statements for the hot path of `POST /cws/v1/egms/{id}/qr`.

Recording a new QR reads nothing: the display row is inserted only if the EGM exists (INSERT
... SELECT from `egms`, so an EGM removed meanwhile shows nothing), and the EGM's `qr_state`
is upserted to point at it. On PostgreSQL both are one statement sent in autocommit on the
driver connection (one round trip, atomic on its own); SQLite, which has no data-modifying
WITH, runs the two in a write transaction. The state row's own lock (taken by the upsert)
serialises this against a rotation claim; nothing needs the EGM row's lock, so an
acquisition never waits for a funding on the same machine.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from sim_cms.models import Egm, QrDisplay, QrFunding, QrState
from sim_cms.reads import single_read
from simkit.db import Database
from simkit.pg_wire import PgIntegrityError

_DISPLAYS = cast(Table, QrDisplay.__table__)
_STATES = cast(Table, QrState.__table__)
_FUNDED = cast(Table, QrFunding.__table__)
_COLUMNS = ("qr_token_id", "url", "token", "expires_at", "rotates_at", "displayed_at")
_EGM_EXISTS = select(Egm.id).where(Egm.id == bindparam("egm"))
_INSERT_DISPLAY = _DISPLAYS.insert().from_select(
    ["egm_id", *_COLUMNS],
    select(Egm.id, *(bindparam(name, type_=_DISPLAYS.c[name].type) for name in _COLUMNS))
    .where(Egm.id == bindparam("egm")),
).returning(_DISPLAYS.c.qr_token_id)  # RETURNING, not rowcount: psycopg may report -1


def _state_upsert(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(_STATES).values(
        egm_id=bindparam("egm"), current_qr_token_id=bindparam("qr"), failures=literal(0))
    return statement.on_conflict_do_update(
        index_elements=[_STATES.c.egm_id],
        set_={"current_qr_token_id": statement.excluded.current_qr_token_id, "failures": 0,
              "last_error": None, "next_acquire_at": None},
    )


def _state_insert(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(_STATES).values(egm_id=bindparam("egm"), failures=literal(0)) \
        .on_conflict_do_nothing(index_elements=[_STATES.c.egm_id])


_UPSERT_STATE = {name: _state_upsert(name) for name in ("postgresql", "sqlite")}
_ENSURE_STATE = {name: _state_insert(name) for name in ("postgresql", "sqlite")}


def ensure_state(connection: Connection, egm_id: str) -> None:
    """Create the EGM's `qr_state` row if it is missing (a racing creator is no error)."""
    connection.execute(_ENSURE_STATE[connection.dialect.name], {"egm": egm_id})


def egm_exists(db: Database, egm_id: str) -> bool:
    """Whether the EGM exists (one SELECT, no transaction)."""
    with single_read(db) as connection:
        return connection.execute(_EGM_EXISTS, {"egm": egm_id}).first() is not None


# On PostgreSQL the whole recording is one statement on the driver connection of
# `Database.hot_read`, in autocommit (atomic on its own): a pooled SQLAlchemy execution cost
# several times what the statement does, on every QR an EGM shows.
_PG_RECORD = """
    WITH shown AS (
        INSERT INTO qr_displays (egm_id, qr_token_id, url, token, expires_at, rotates_at,
                                 displayed_at)
        SELECT id, :qr_token_id, :url, :token, :expires_at, :rotates_at, :displayed_at
        FROM egms WHERE id = :egm
        RETURNING egm_id, qr_token_id
    )
    INSERT INTO qr_state (egm_id, current_qr_token_id, failures)
    SELECT egm_id, qr_token_id, 0 FROM shown
    ON CONFLICT (egm_id) DO UPDATE SET current_qr_token_id = excluded.current_qr_token_id,
        failures = 0, last_error = NULL, next_acquire_at = NULL
    RETURNING egm_id
"""


class TokenIdTaken(Exception):
    """The QR token id was recorded before (on any EGM): nothing was written."""


def record(db: Database, display: QrDisplay) -> bool:
    """Record `display` and make it the EGM's current QR (clears failures and backoff).

    False, with nothing written, when the EGM does not exist. A token id already recorded
    raises `TokenIdTaken`, also with nothing written.
    """
    if db.is_sqlite:
        try:
            with db.write() as session:
                return show(session.connection(), display)
        except IntegrityError as exc:
            raise TokenIdTaken(display.qr_token_id) from exc
    values = {name: getattr(display, name) for name in _COLUMNS}
    try:
        return bool(db.hot_read(_PG_RECORD, {"egm": display.egm_id, **values}))
    except PgIntegrityError as exc:
        raise TokenIdTaken(display.qr_token_id) from exc


def show(connection: Connection, display: QrDisplay) -> bool:
    """Record `display` and make it the EGM's current QR (clears failures and backoff).

    False, with nothing written, when the EGM does not exist. A token id already recorded
    fails on the primary key (IntegrityError).
    """
    values = {name: getattr(display, name) for name in _COLUMNS}
    if connection.execute(_INSERT_DISPLAY, {"egm": display.egm_id, **values}).first() is None:
        return False
    connection.execute(_UPSERT_STATE[connection.dialect.name],
                       {"egm": display.egm_id, "qr": display.qr_token_id})
    return True


_STATE_OUTER = _STATES.c
_SCREEN = (
    select(
        Egm.id, Egm.name, Egm.state, Egm.credit_meter, Egm.credit_limit, Egm.currency,
        Egm.updated_at, _STATE_OUTER.failures, _STATE_OUTER.last_error,
        _STATE_OUTER.next_acquire_at, _DISPLAYS.c.qr_token_id, _DISPLAYS.c.url,
        _DISPLAYS.c.token, _DISPLAYS.c.expires_at, _DISPLAYS.c.rotates_at,
        _DISPLAYS.c.displayed_at, (_FUNDED.c.qr_token_id.is_not(None)).label("funded"),
    )
    .select_from(Egm.__table__)
    .outerjoin(_STATES, _STATE_OUTER.egm_id == Egm.id)
    .outerjoin(_DISPLAYS, _DISPLAYS.c.qr_token_id == _STATE_OUTER.current_qr_token_id)
    .outerjoin(_FUNDED, _FUNDED.c.qr_token_id == _STATE_OUTER.current_qr_token_id)
    .where(Egm.id == bindparam("egm"))
)


def screen_row(db: Database, egm_id: str) -> Any:
    """What the EGM screen shows, in one SELECT without a transaction, or None (no EGM).

    The EGM's columns, its QR state's `failures`, `last_error`, `next_acquire_at` (None
    when it never had one), the current display's columns (`qr_token_id` None: none) and
    `funded` (the current QR token already paid a funding: it is spent).
    """
    with single_read(db) as connection:
        return connection.execute(_SCREEN, {"egm": egm_id}).first()
