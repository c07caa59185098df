"""A `ClockStore` in the sim's database, so every worker process shares one manual time.

`ManualClock` keeps its state in a store. In memory that state is private to one process;
a gunicorn server runs several, and `POST /_sim/clock` reaches only one of them. Keeping the
state in the `sim_clock` row (id 1) makes a move made through any worker visible to all.

Moves are read-modify-write under the row's lock (`update`): SQLite's write transactions
begin IMMEDIATE and so run one at a time, and on PostgreSQL the row is read `FOR UPDATE`.
Concurrent advances therefore add up instead of overwriting each other.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from simkit.clock import ClockState, utc
from simkit.db import Database
from simkit.models import ClockRow

_ROW_ID = 1


class DatabaseClockStore:
    """Keeps a `ManualClock`'s state in the `sim_clock` row of a sim's database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def load(self) -> ClockState | None:
        """The stored state, or None when no clock has been stored (or it was cleared)."""
        with self._db.read() as session:
            row = session.get(ClockRow, _ROW_ID)
            return _state_of(row) if row is not None else None

    def save(self, state: ClockState) -> None:
        """Replace the stored state in one statement.

        An upsert, not read-then-insert: several workers start at once and each saves the
        initial state; a plain INSERT would make all but one of them fail on the primary key.
        """
        values = _values(state)
        statement = self._insert().values(id=_ROW_ID, **values)
        statement = statement.on_conflict_do_update(index_elements=[ClockRow.id], set_=values)
        with self._db.write() as session:
            session.execute(statement)

    def update(self, change: Callable[[ClockState | None], ClockState]) -> ClockState:
        """Store `change(current)` in one transaction that holds the row's lock throughout."""
        with self._db.write() as session:
            row = _locked_row(session)
            if row is None:
                first = change(None)
                # Several workers may store the first state at once: one insert wins, the
                # others then change the state it stored, under its lock.
                inserted = session.execute(self._insert().values(id=_ROW_ID, **_values(first))
                                           .on_conflict_do_nothing(index_elements=[ClockRow.id]))
                if getattr(inserted, "rowcount", 0) == 1:
                    return first
                row = _locked_row(session)
                assert row is not None
            state = change(_state_of(row))
            row.frozen_at, row.offset_us = state.frozen_at, _microseconds(state.offset)
        return state

    def _insert(self) -> Any:
        insert: Any = sqlite.insert if self._db.is_sqlite else postgresql.insert
        return insert(ClockRow)

    def clear(self) -> None:
        """Forget the state; a `ManualClock` on this store then restarts from real time."""
        with self._db.write() as session:
            row = session.get(ClockRow, _ROW_ID)
            if row is not None:
                session.delete(row)


def _locked_row(session: Session) -> ClockRow | None:
    statement = select(ClockRow).where(ClockRow.id == _ROW_ID).with_for_update()
    return session.scalars(statement).one_or_none()


def _state_of(row: ClockRow) -> ClockState:
    frozen_at = utc(row.frozen_at) if row.frozen_at is not None else None
    return ClockState(frozen_at=frozen_at, offset=timedelta(microseconds=row.offset_us))


def _values(state: ClockState) -> dict[str, Any]:
    return {"frozen_at": state.frozen_at, "offset_us": _microseconds(state.offset)}


def _microseconds(offset: timedelta) -> int:
    """`offset` in whole microseconds, exactly (timedelta arithmetic, no float rounding)."""
    return offset // timedelta(microseconds=1)
