"""Engine and session factory: SQLite file by default, PostgreSQL by URL.

SQLite runs in WAL mode with a busy timeout, and read-then-write units of work open with
`BEGIN IMMEDIATE` so two workers can never both read a row and then both write on what they
read (the second waits for the first to commit). pysqlite's own transaction handling is turned
off so that SQLAlchemy's BEGIN is the one that reaches the database, as SQLAlchemy's SQLite
notes describe. On PostgreSQL the same units of work rely on row locks (`FOR UPDATE`) taken by
the services that need them.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from simkit.hot_connections import HotConnections, HotTransaction

_BEGIN_OPTION = "scanpay_sqlite_begin"
_SYNC_OPTION = "scanpay_sqlite_synchronous"


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
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
        record.info[_SYNC_OPTION] = synchronous

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        options = connection.get_execution_options()
        wanted = options.get(_SYNC_OPTION, synchronous)
        info = connection.connection.info
        if info.get(_SYNC_OPTION) != wanted:  # durability is per connection in SQLite
            connection.exec_driver_sql(f"PRAGMA synchronous={wanted}")
            info[_SYNC_OPTION] = wanted
        mode = options.get(_BEGIN_OPTION, "DEFERRED")
        if mode != "NONE":  # NONE: single-statement reads run in SQLite's autocommit mode
            connection.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str, *, synchronous: str = "FULL") -> Engine:
    """Create an engine for `url`; SQLite files get WAL, busy timeout and explicit BEGIN.

    `synchronous` is SQLite's durability level: FULL where a lost commit would lose money or
    allow a replay (ledger, used tokens, payments), NORMAL where a crash may lose the last
    moments (token issuance; WAL keeps what was committed before a process crash either way).
    """
    url = normalise_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        # Pooled connections: opening one costs four PRAGMAs, and closing the last one makes
        # SQLite checkpoint and delete the WAL, which then has to be made again.
        engine = create_engine(
            url, pool_size=8, max_overflow=24,
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        _install_sqlite_pragmas(engine, synchronous)
    else:
        # No pre-ping: it cost a round trip on every checkout, several per payment. A
        # connection that broke (a database restart) fails its request once and is then
        # replaced: SQLAlchemy invalidates the whole pool on the first disconnect error.
        engine = create_engine(url, pool_size=8, max_overflow=16, pool_recycle=1800)
    _forget_pool_in_forked_children(engine)
    return engine


def _forget_pool_in_forked_children(engine: Engine) -> None:
    """A forked worker must never use a connection its parent opened: drop (not close) them."""
    ref = weakref.ref(engine)

    def _after_fork() -> None:
        alive = ref()
        if alive is not None:
            alive.dispose(close=False)

    os.register_at_fork(after_in_child=_after_fork)


class Database:
    """A sim's database: `read()` for queries, `write()` for read-then-write units of work."""

    def __init__(self, url: str, *, synchronous: str = "FULL") -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, synchronous=synchronous)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        writer = self.engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        relaxed = writer.execution_options(**{_SYNC_OPTION: "NORMAL"})
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(writer, expire_on_commit=False)
        self._relaxed_engine = relaxed
        self._core_writer = writer
        self._autocommit_reader = self.engine.execution_options(**{_BEGIN_OPTION: "NONE"})
        self._hot = HotConnections(self.engine)

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

    @contextmanager
    def core_read(self) -> Iterator[Connection]:
        """A Core connection for hot-path, single-statement reads (no ORM, no BEGIN on SQLite).

        One SELECT is its own consistent snapshot; several statements needing one snapshot
        must use `read()` instead.
        """
        with self._autocommit_reader.connect() as connection:
            yield connection

    @contextmanager
    def core_write(self) -> Iterator[Connection]:
        """A durable Core transaction (like `write()`, without the ORM session's overhead).

        On SQLite it begins IMMEDIATE; on PostgreSQL callers lock what they read.
        """
        with self._core_writer.begin() as connection:
            yield connection

    @contextmanager
    def core_write_relaxed(self) -> Iterator[Connection]:
        """A Core transaction a machine crash may lose (SQLite synchronous=NORMAL).

        For hot-path inserts of records that are cheap to lose, such as issued QR tokens (an
        EGM whose token was lost just asks again). In WAL mode a process crash loses nothing
        committed either way. PostgreSQL commits as usual.
        """
        with self._relaxed_engine.begin() as connection:
            yield connection

    def hot_read(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        """The rows of one statement, on this thread's own driver connection, in autocommit.

        For the few statements made on every request (is a fault declared? a payment's
        compare-and-set, a QR's recording): checking a pooled connection out through
        SQLAlchemy costs several times what such a statement does. `sql` is plain SQL with
        `:name` parameters; values come back as the driver returns them (no type conversion).
        The connection runs in autocommit, so one statement is one consistent snapshot, and a
        data-modifying one (a single, possibly WITH, statement) commits on its own, atomically.
        """
        return self._hot.read(sql, params or {})

    def hot_transaction(self) -> AbstractContextManager[HotTransaction]:
        """A short PostgreSQL transaction on a driver connection, for the hottest write.

        Each statement costs one round trip and little else: no pool checkout, no ORM, no
        execution context; the transaction commits when the block ends and rolls back when it
        raises (a unique-key refusal as `HotIntegrityError`). Statements are plain SQL with
        `:name` parameters, bound as the driver adapts them; rows come back as named tuples.
        Not on SQLite (`NotImplementedError`): use `core_write()` there.
        """
        return self._hot.transaction()

    def dispose(self) -> None:
        """Close pooled connections (call in a child after fork, and on shutdown)."""
        self._hot.close_all()
        self.engine.dispose()
