"""Engine and session factory: SQLite file by default, PostgreSQL by URL.

SQLite runs in WAL mode with a busy timeout, and read-then-write units of work open with
`BEGIN IMMEDIATE` so two workers can never both read a row and then both write on what they
read (the second waits for the first to commit). pysqlite's own transaction handling is turned
off so that SQLAlchemy's BEGIN is the one that reaches the database, as SQLAlchemy's SQLite
notes describe. On PostgreSQL the same units of work rely on row locks (`FOR UPDATE`) taken by
the services that need them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

_BEGIN_OPTION = "scanpay_sqlite_begin"


def normalise_url(url: str) -> str:
    """Map plain `postgresql://` URLs onto the psycopg 3 driver the project ships."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def sqlite_url(path: str) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{path}"


def _install_sqlite_pragmas(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str, *, synchronous: str = "FULL") -> Engine:
    """Create an engine for `url`; SQLite files get WAL, busy timeout and explicit BEGIN.

    `synchronous` is SQLite's durability level: FULL where a lost commit would lose money or
    allow a replay (ledger, used tokens, payments), NORMAL where a crash may lose the last
    moments (token issuance; WAL keeps what was committed before a process crash either way).
    """
    url = normalise_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        # One connection per checkout: SQLite connections are cheap and NullPool keeps
        # forked gunicorn workers from sharing a file handle opened by the parent.
        engine = create_engine(
            url, poolclass=NullPool, connect_args={"check_same_thread": False, "timeout": 30}
        )
        _install_sqlite_pragmas(engine, synchronous)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


class Database:
    """A sim's database: `read()` for queries, `write()` for read-then-write units of work."""

    def __init__(self, url: str, *, synchronous: str = "FULL") -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, synchronous=synchronous)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        writer = self.engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(writer, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads; it never commits, and objects stay readable after it closes."""
        with self._reader() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any exception.

        On SQLite it begins IMMEDIATE (takes the write lock up front); on PostgreSQL callers
        lock the rows they read with `with_for_update()`.
        """
        with self._writer() as session, session.begin():
            yield session

    def dispose(self) -> None:
        """Close pooled connections (call in a child after fork, and on shutdown)."""
        self.engine.dispose()
