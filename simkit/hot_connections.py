"""A few driver connections for reads made on every request, outside SQLAlchemy's pool.

A pooled checkout, SQLAlchemy's execution context and result wrapping cost several times what
a one-row read of a small table costs the database. The few reads that run on every request
use these connections instead: a small stack of driver connections in autocommit (a single
statement is its own snapshot), taken and given back around each read, so a server that runs
a fixed thread pool and one that starts a thread per request both reuse them. A forked child
never uses (nor closes) what its parent opened.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

_NAMED_PARAM = re.compile(r"(?<!:):([A-Za-z_][A-Za-z0-9_]*)")
MAX_IDLE = 16  # connections kept between reads; more are closed after use


class HotConnections:
    """The idle driver connections of one engine's database, for single-statement reads."""

    def __init__(self, engine: Engine) -> None:
        self._url = engine.url
        self._backend = engine.dialect.name
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._inherited: list[Any] = []  # a parent's connections: kept, never used or closed
        self._pid = os.getpid()
        self._sql_cache: dict[str, str] = {}

    def read(self, sql: str, params: Mapping[str, Any]) -> list[Any]:
        """Run one read statement with `:name` parameters and return all its rows."""
        connection = self._take()
        try:
            cursor = connection.execute(self._native(sql), params)
            try:
                rows = list(cursor.fetchall())
            finally:
                cursor.close()
        except BaseException:
            _close(connection)  # its state is unknown: never hand it out again
            raise
        self._give(connection)
        return rows

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

    def _native(self, sql: str) -> str:
        native = self._sql_cache.get(sql)
        if native is None:
            native = sql if self._backend == "sqlite" else _NAMED_PARAM.sub(r"%(\1)s", sql)
            self._sql_cache[sql] = native
        return native

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
        return psycopg.connect(conninfo, autocommit=True)


def _close(connection: Any) -> None:
    with contextlib.suppress(Exception):  # a connection already gone is fine
        connection.close()
