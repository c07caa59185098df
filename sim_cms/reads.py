"""One-statement reads on the hot paths, without a transaction around them.

A single SELECT is its own consistent snapshot, so wrapping it in BEGIN ... ROLLBACK buys
nothing and costs two round trips on PostgreSQL. SQLite already runs `Database.core_read`
in autocommit; on PostgreSQL the connection is switched to AUTOCOMMIT for this checkout
(only there: on SQLite that switch would hand transaction control back to the driver).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection

from simkit.db import Database


@contextmanager
def single_read(db: Database) -> Iterator[Connection]:
    """A Core connection for one SELECT, in autocommit on every backend."""
    with db.core_read() as connection:
        if connection.dialect.name == "postgresql":  # changes this checkout in place
            connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection
