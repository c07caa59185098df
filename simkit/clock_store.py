"""A `ClockStore` in the sim's database, so every worker process shares one manual time.

`ManualClock` keeps its state in a store. In memory that state is private to one process;
a gunicorn server runs several, and `POST /_sim/clock` reaches only one of them. Keeping the
state in the `sim_clock` row (id 1) makes a move made through any worker visible to all.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite

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
            if row is None:
                return None
            frozen_at = utc(row.frozen_at) if row.frozen_at is not None else None
            return ClockState(frozen_at=frozen_at, offset=timedelta(microseconds=row.offset_us))

    def save(self, state: ClockState) -> None:
        """Replace the stored state in one statement.

        An upsert, not read-then-insert: several workers start at once and each saves the
        initial state; a plain INSERT would make all but one of them fail on the primary key.
        """
        values: dict[str, Any] = {
            "frozen_at": state.frozen_at,
            "offset_us": _microseconds(state.offset),
        }
        insert: Any = sqlite.insert if self._db.is_sqlite else postgresql.insert
        statement = insert(ClockRow).values(id=_ROW_ID, **values)
        statement = statement.on_conflict_do_update(index_elements=[ClockRow.id], set_=values)
        with self._db.write() as session:
            session.execute(statement)

    def clear(self) -> None:
        """Forget the state; a `ManualClock` on this store then restarts from real time."""
        with self._db.write() as session:
            row = session.get(ClockRow, _ROW_ID)
            if row is not None:
                session.delete(row)


def _microseconds(offset: timedelta) -> int:
    """`offset` in whole microseconds, exactly (timedelta arithmetic, no float rounding)."""
    return offset // timedelta(microseconds=1)
