"""One-statement work on the hot paths, without a transaction around it.

A single statement is atomic and its own consistent snapshot, so wrapping it in BEGIN ...
COMMIT/ROLLBACK buys nothing and costs two round trips on PostgreSQL. SQLite already runs
`Database.core_read` in autocommit; on PostgreSQL the connection is switched to AUTOCOMMIT
for this checkout (only there: on SQLite that switch would hand transaction control back to
the driver). A write sent this way commits durably as the statement ends (PostgreSQL's
synchronous_commit applies as to any commit).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection

from simkit.db import Database


@contextmanager
def single_read(db: Database) -> Iterator[Connection]:
    """A Core connection for one statement, in autocommit on every backend."""
    with db.core_read() as connection:
        if connection.dialect.name == "postgresql":  # changes this checkout in place
            connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection
