"""A few driver connections for the statements made on every request, outside SQLAlchemy's pool.

A pooled checkout, SQLAlchemy's execution context and result wrapping cost several times what
a one-row read of a small table costs the database. The few reads that run on every request
use these connections instead: a small stack of driver connections in autocommit (a single
statement is its own snapshot), taken and given back around each read, so a server that runs
a fixed thread pool and one that starts a thread per request both reuse them. A forked child
never uses (nor closes) what its parent opened.

On PostgreSQL the connections are driven below psycopg's cursor API (`simkit.pg_wire`: prepared
statements over libpq, a few microseconds each instead of tens) and also carry short hot-path
transactions (`transaction()`): BEGIN goes with the first statement and COMMIT with the last,
so a worker needs no second set of connections for its writes.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import Engine

from simkit import crash_points
from simkit.pg_wire import (
    Command,
    PgConnectionLost,
    PgIntegrityError,
    PgStatementError,
    PgWire,
)

MAX_IDLE = 16  # connections kept between reads; more are closed after use


class HotIntegrityError(Exception):
    """A unique or foreign key refused a statement of a hot transaction (now rolled back)."""


class HotTransaction:
    """The statements of one hot transaction: `:name` parameters, rows read by attribute.

    BEGIN travels with the first statement and COMMIT with the last (`first_and_commit`), so
    a transaction of two statements costs two round trips.
    """

    def __init__(self, wire: PgWire) -> None:
        self._wire = wire
        self._begun = False
        self._ended = False

    def first(self, sql: str, params: Mapping[str, Any]) -> Any | None:
        """Run one statement and return its first row (a named tuple), or None."""
        command = Command(sql, params)
        if self._begun:
            (rows,) = self._wire.round_trip([command])
        else:
            self._begun = True
            _, rows = self._wire.round_trip([b"BEGIN", command])
        return rows[0] if rows else None

    def first_and_commit(self, sql: str, params: Mapping[str, Any]) -> Any | None:
        """Run the transaction's last statement and its COMMIT in one round trip (pipelined).

        The row locks the transaction holds are released as soon as the database has
        committed, not one more round trip (and one more wait for this process's turn to run)
        later: for a lock every writer queues on, that wait is the throughput. The statement
        stays a prepared one, so the database does not plan it again. Both database crash
        points of `simkit.crash_points` are here, before the round trip: it cannot be cut
        between the statement and its commit.
        """
        crash_points.reached(crash_points.DURING_IDEMPOTENCY_WRITE)
        crash_points.reached(crash_points.BEFORE_COMMIT)
        commands: list[Command | bytes] = [Command(sql, params), b"COMMIT"]
        if not self._begun:
            commands.insert(0, b"BEGIN")
        self._begun = True
        rows = self._wire.round_trip(commands)[-2]
        self._ended = True
        return rows[0] if rows else None

    def _commit(self) -> None:
        if self._begun and not self._ended:
            self._wire.round_trip([b"COMMIT"])
        self._ended = True

    def _roll_back(self) -> None:
        """End the transaction unapplied; the connection is clean (or raises PgConnectionLost)."""
        if self._wire.in_transaction:
            self._wire.rollback()
        self._ended = True
        if self._wire.in_transaction:
            raise PgConnectionLost("the transaction could not be rolled back")


class HotConnections:
    """The idle driver connections of one engine's database, for single-statement reads."""

    def __init__(self, engine: Engine) -> None:
        self._url = engine.url
        self._backend = engine.dialect.name
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._inherited: list[Any] = []  # a parent's connections: kept, never used or closed
        self._pid = os.getpid()

    def read(self, sql: str, params: Mapping[str, Any]) -> list[Any]:
        """Run one statement with `:name` parameters, in autocommit, and return all its rows.

        A write commits as it ends, so the crash points of a commit are reached before it is
        sent (`crash_points.before_statement`).
        """
        if crash_points.armed() is not None:
            crash_points.before_statement(sql, autocommit=True)
        connection = self._take()
        try:
            if isinstance(connection, PgWire):
                (rows,) = connection.round_trip([Command(sql, params)])
            else:
                cursor = connection.execute(sql, params)  # SQLite takes `:name` as it is
                try:
                    rows = list(cursor.fetchall())
                finally:
                    cursor.close()
        except (PgIntegrityError, PgStatementError):
            self._give(connection)  # refused, but the connection is back in autocommit
            raise
        except BaseException:
            _close(connection)  # its state is unknown: never hand it out again
            raise
        self._give(connection)
        return rows

    @contextlib.contextmanager
    def transaction(self) -> Iterator[HotTransaction]:
        """One transaction on a driver connection: committed when the block ends, rolled back
        when it raises (a unique-key refusal surfaces as `HotIntegrityError`). PostgreSQL only:
        on SQLite the units of work need `BEGIN IMMEDIATE`, which `Database.core_write` gives.
        """
        if self._backend != "postgresql":
            raise NotImplementedError("hot transactions run on PostgreSQL only")
        wire = self._take()
        transaction = HotTransaction(wire)
        try:
            yield transaction
            transaction._commit()
        except BaseException as exc:
            try:
                transaction._roll_back()
            except BaseException:
                _close(wire)  # its state is unknown: never hand it out again
                raise
            self._give(wire)
            if isinstance(exc, PgIntegrityError):
                raise HotIntegrityError(str(exc)) from exc
            raise
        self._give(wire)

    def close_all(self) -> None:
        """Close every idle connection (the engine is being disposed)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            _close(connection)

    def _take(self) -> Any:
        with self._lock:
            if self._pid != os.getpid():
                self._inherited.extend(self._idle)
                self._idle, self._pid = [], os.getpid()
            connection = self._idle.pop() if self._idle else None
        return connection if connection is not None else self._open()

    def _give(self, connection: Any) -> None:
        with self._lock:
            if self._pid == os.getpid() and len(self._idle) < MAX_IDLE:
                self._idle.append(connection)
                return
        _close(connection)

    def _open(self) -> Any:
        if self._backend == "sqlite":
            path = self._url.database
            if not path or path == ":memory:":
                raise ValueError("hot reads need a SQLite file, not an in-memory database")
            connection = sqlite3.connect(path, timeout=30, isolation_level=None,
                                         check_same_thread=False)
            connection.execute("PRAGMA busy_timeout=30000")
            return connection
        import psycopg

        conninfo = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
        # Hot statements are the same few primary-key lookups and writes, prepared once per
        # connection; a generic plan spares the database planning them again per execution.
        return PgWire(psycopg.connect(conninfo, autocommit=True,
                                      options="-c plan_cache_mode=force_generic_plan"))


def _close(connection: Any) -> None:
    with contextlib.suppress(Exception):  # a connection already gone is fine
        (connection.connection if isinstance(connection, PgWire) else connection).close()
