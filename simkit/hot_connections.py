"""One driver connection per thread for reads made on every request, outside SQLAlchemy's pool.

A pooled checkout, SQLAlchemy's execution context and result wrapping cost several times what
a one-row read of a small table costs the database. The few reads that run on every request
use these connections instead: one per thread and process, opened on first use, in autocommit
(a single statement is its own snapshot), never shared across a fork.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

_NAMED_PARAM = re.compile(r"(?<!:):([A-Za-z_][A-Za-z0-9_]*)")


class _Held:
    """One thread's connection; closed when the thread ends (its locals go) or on dispose.

    Servers that start a thread per request (werkzeug's) would otherwise leave one open
    connection behind per request.
    """

    __slots__ = ("__weakref__", "connection")

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a connection already gone is fine
            self.connection.close()

    def __del__(self) -> None:
        self.close()


class HotConnections:
    """The per-thread driver connections of one engine's database."""

    def __init__(self, engine: Engine) -> None:
        self._url = engine.url
        self._backend = engine.dialect.name
        self._local = threading.local()
        self._all: weakref.WeakSet[_Held] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._sql_cache: dict[str, str] = {}

    def read(self, sql: str, params: Mapping[str, Any]) -> list[Any]:
        """Run one read statement with `:name` parameters and return all its rows."""
        connection = self._connection()
        cursor = connection.execute(self._native(sql), params)
        try:
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def close_all(self) -> None:
        """Close every connection this object opened (the engine is being disposed)."""
        with self._lock:
            held, self._all = list(self._all), weakref.WeakSet()
        for one in held:
            one.close()
        self._local = threading.local()

    def _native(self, sql: str) -> str:
        native = self._sql_cache.get(sql)
        if native is None:
            native = sql if self._backend == "sqlite" else _NAMED_PARAM.sub(r"%(\1)s", sql)
            self._sql_cache[sql] = native
        return native

    def _connection(self) -> Any:
        local = self._local
        if getattr(local, "pid", None) == os.getpid():
            return local.held.connection
        held = _Held(self._open())
        local.held, local.pid = held, os.getpid()
        with self._lock:
            self._all.add(held)
        return held.connection

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
