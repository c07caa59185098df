"""Writes rows off the request path: a queue per table and database, and one batch writer.

Some rows are needed soon but not by the response that makes them: the request journal, and
issued QR tokens (the phone asks for one only after the EGM has shown it). Writing each in its
own transaction cost more than everything else such a request does; here a request only queues
a function that makes the row, and a background thread stores every waiting row in one INSERT
batch and one commit, so the cost per row falls as load rises.

What this trades: a row is stored a moment after its response leaves (well under a
millisecond when idle, a few under load), and a process killed in that moment loses it. Readers
in the same process call `flush()` first, so they always see every row this process queued
before; readers in another process that miss a row they expect wait for it with a deadline.
Only rows that may be lost in a crash go through here: never money, never a used token.

One writer per `Database` object and process, whatever the tables; a forked worker starts its
own (a thread does not survive `fork`).
"""

from __future__ import annotations

import atexit
import functools
import itertools
import logging
import operator
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Table, insert

from simkit.clock import monotonic
from simkit.db import Database

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 10.0
MAX_BATCH = 500  # rows per transaction; a backlog is written in several batches
# How long the writer waits for more rows after the first of a batch arrives: under load
# this gathers many rows into one commit; `flush()` cuts it short.
LINGER_S = 0.004
# What may wait at most, in (estimated) bytes; past this a request waits for the writer, so
# memory stays bounded when rows come faster than the database takes them. Generous enough
# that a commit stalled by a WAL checkpoint does not reach back into request latency.
MAX_PENDING_BYTES = 16 * 1024 * 1024
ROW_BYTES = 600  # the estimate for a row whose caller gives none (a QR token's row)

RowMaker = Callable[[], dict[str, Any]]


class BatchWriter:
    """A FIFO of rows to insert and the one thread that stores them, a batch per commit.

    One thread per database, whatever the tables: two writers would only fight over SQLite's
    single write lock.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._plans: dict[tuple[str, tuple[str, ...]], _InsertPlan] = {}
        self._start_process()

    def _start_process(self) -> None:
        # Everything a forked child must not share with its parent is made here.
        self._pid = os.getpid()
        self._cond = threading.Condition(threading.Lock())  # not reentrant: cheaper to take
        self._pending: list[tuple[Table, RowMaker, int]] = []
        self._pending_bytes = 0
        self._submitted = 0
        self._written = 0
        self._waiting_readers = 0
        self._thread: threading.Thread | None = None

    def submit(self, table: Table, make_row: RowMaker, size: int = ROW_BYTES) -> None:
        """Queue one row (made by the writer, so costly work like redaction leaves the request).

        `size` estimates what the queued row holds in memory. Never blocks on the database;
        waits only while the queue is over its memory budget.
        """
        if self._pid != os.getpid():
            self._start_process()
        with self._cond:
            while self._pending_bytes >= MAX_PENDING_BYTES and self._thread is not None:
                self._cond.wait(1.0)
            self._pending.append((table, make_row, size))
            self._pending_bytes += size
            self._submitted += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="batch-writer", daemon=True
                )
                self._thread.start()
            if len(self._pending) == 1 or len(self._pending) >= MAX_BATCH:
                self._cond.notify_all()

    def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> bool:
        """Wait until every row queued so far is stored; False if that took too long."""
        if self._pid != os.getpid():
            return True  # nothing was queued in this process yet
        deadline = monotonic() + timeout_s
        with self._cond:
            target = self._submitted
            self._waiting_readers += 1
            self._cond.notify_all()  # a reader is waiting: no lingering
            try:
                while self._written < target:
                    left = deadline - monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
            finally:
                self._waiting_readers -= 1
        return True

    def flush_if_pending(self, timeout_s: float = FLUSH_TIMEOUT_S) -> bool:
        """`flush()` when this process has queued rows not stored yet; whether it had any
        (a reader that missed a row then knows whether looking again can help)."""
        if self._pid != os.getpid():
            return False
        with self._cond:
            if self._written >= self._submitted:
                return False
        self.flush(timeout_s)
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                linger_until = monotonic() + LINGER_S
                while len(self._pending) < MAX_BATCH and not self._waiting_readers:
                    left = linger_until - monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                self._pending_bytes -= sum(size for _, _, size in batch)
            self._store(batch)
            with self._cond:
                self._written += len(batch)
                self._cond.notify_all()

    def _store(self, batch: list[tuple[Table, RowMaker, int]]) -> None:
        # Rows of one table with the same columns share one INSERT (almost always one group
        # per table).
        groups: dict[tuple[Table, tuple[str, ...]], list[dict[str, Any]]] = {}
        try:
            for table, make_row, _ in batch:
                try:
                    row = make_row()
                except Exception:  # one bad row must not cost the rest of the batch
                    log.exception("batch writer: a row for %s could not be made", table.name)
                    continue
                groups.setdefault((table, tuple(row)), []).append(row)
            with self._db.core_write_relaxed() as connection:
                for (table, keys), rows in groups.items():
                    plan = self._plan(connection, table, keys)
                    for sql, params in plan.statements([plan.bind(row) for row in rows]):
                        connection.exec_driver_sql(sql, params)
        except Exception:
            # A failed batch must never stop the sim; the rows are reported lost.
            names = ", ".join(sorted({table.name for table, _ in groups})) or "?"
            log.exception("batch writer: %d rows (%s) could not be stored", len(batch), names)

    def _plan(self, connection: Connection, table: Table, keys: tuple[str, ...]) -> _InsertPlan:
        plan = self._plans.get((table.name, keys))
        if plan is None:
            plan = self._plans[(table.name, keys)] = _InsertPlan.make(
                connection.dialect, table, keys)
        return plan


@dataclass(frozen=True)
class _InsertPlan:
    """An INSERT compiled once for the driver, with each column's bind conversion.

    The ORM-free `execute(insert(table), rows)` spent more per row on SQLAlchemy's parameter
    handling than the database spent storing it; this does the same conversions directly,
    taking a row's values in one C call and converting only the columns that need it.
    """

    sql: str
    names: tuple[str, ...]
    take: Callable[[dict[str, Any]], tuple[Any, ...]]
    converted: tuple[tuple[int, Callable[[Any], Any]], ...]
    positional: bool
    # Rows per multi-row INSERT on SQLite (1: one statement per row, through executemany).
    rows_per_statement: int

    @classmethod
    def make(cls, dialect: Dialect, table: Table, keys: tuple[str, ...]) -> _InsertPlan:
        compiled = insert(table).compile(dialect=dialect, column_keys=list(keys))
        names = tuple(compiled.positiontup or ()) if compiled.positional else keys
        processors = [table.c[name].type.bind_processor(dialect) for name in names]
        converted = tuple((i, p) for i, p in enumerate(processors) if p is not None)
        getter = operator.itemgetter(*names)
        take = getter if len(names) > 1 else (lambda row: (getter(row),))
        multi_row = dialect.name == "sqlite" and compiled.positional
        # the largest power of two within SQLite's parameter limit
        per_statement = 1 << ((SQLITE_MAX_VARIABLES // len(names)).bit_length() - 1) \
            if multi_row else 1
        return cls(str(compiled), names, take, converted, compiled.positional, per_statement)

    def statements(self, params: list[Any]) -> Iterator[tuple[str, Any]]:
        """(SQL, parameters) to store rows with these driver parameters.

        On SQLite, rows go in multi-row INSERTs: Python's sqlite3 lets go of the interpreter
        lock around every statement it steps, and with executemany that is once a row. A
        request thread then takes the lock each time and the writer waits to get it back:
        two thread switches per stored row, which cost the journaled QR Code API more than
        storing the row did. Elsewhere, executemany (psycopg sends the rows in one pipeline).
        """
        if self.rows_per_statement == 1 or len(params) == 1:
            yield self.sql, params
            return
        start = 0
        while start < len(params):
            # Statements of a few sizes only (powers of two): SQLite keeps each distinct
            # statement compiled, and one for every batch size cost tens of MiB of memory.
            rows = min(self.rows_per_statement, 1 << ((len(params) - start).bit_length() - 1))
            chunk = params[start:start + rows]
            yield _multi_row_sql(self.sql, rows), tuple(itertools.chain.from_iterable(chunk))
            start += rows

    def bind(self, row: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The driver parameters of one row (every column of the plan must be in it)."""
        values = self.take(row)
        if self.converted:
            values_list = list(values)
            for index, process in self.converted:
                values_list[index] = process(values_list[index])
            values = tuple(values_list)
        return values if self.positional else dict(zip(self.names, values, strict=True))


# SQLite's lowest limit on a statement's parameters (older builds; newer allow 32,766).
SQLITE_MAX_VARIABLES = 999


@functools.lru_cache(maxsize=64)
def _multi_row_sql(single_row_sql: str, rows: int) -> str:
    """`INSERT ... VALUES (?, ?)` made into one statement for `rows` rows."""
    head, values_keyword, one_row = single_row_sql.rpartition(" VALUES ")
    if not values_keyword:
        raise ValueError(f"not a single-row INSERT: {single_row_sql}")
    return f"{head}{values_keyword}{', '.join([one_row] * rows)}"


_writers: weakref.WeakKeyDictionary[Database, BatchWriter] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


def writer_for(db: Database) -> BatchWriter:
    """The writer of `db` for this process (made on first use)."""
    with _writers_lock:
        writer = _writers.get(db)
        if writer is None:
            writer = _writers[db] = BatchWriter(db)
        return writer


@atexit.register
def _flush_all_at_exit() -> None:
    """A clean shutdown stores what is still queued."""
    for writer in list(_writers.values()):
        writer.flush(timeout_s=2.0)
