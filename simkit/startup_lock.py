"""One process at a time builds a database's schema and seed data.

Several processes may start on one database at once: gunicorn workers without `--preload`,
two replicas of a sim (docs/operations.md, "Scale-out"), a restart during a deploy. Alembic's
DDL and the seeding's "insert if missing" are not safe to run concurrently, so start-up holds
this lock around both: a PostgreSQL session advisory lock, or for SQLite an exclusive `flock`
on a file beside the database. The second process waits, then finds everything done.
"""

from __future__ import annotations

import fcntl
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from simkit.db import Database

_LOCK_NAME = b"scanpay-sim start-up"


@contextmanager
def startup_lock(db: Database) -> Iterator[None]:
    """Hold the database's start-up lock for the duration of the block."""
    if db.is_sqlite:
        path = db.engine.url.database
        if not path or path == ":memory:":
            yield  # a private in-memory database has no other process to race
            return
        with Path(f"{path}.startup-lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    key = zlib.crc32(_LOCK_NAME)
    with db.engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            connection.commit()
