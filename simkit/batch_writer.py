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

One writer per table, `Database` object and process; a forked worker starts its own (a thread
does not survive `fork`).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import Table, insert

from simkit.clock import monotonic
from simkit.db import Database

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 10.0
MAX_BATCH = 500  # rows per INSERT; a backlog is written in several batches

RowMaker = Callable[[], dict[str, Any]]


class BatchWriter:
    """A FIFO of rows to insert into one table and the thread that stores them in batches."""

    def __init__(self, db: Database, table: Table) -> None:
        self._db = db
        self._table = table
        self._statement = insert(table)
        self._start_process()

    def _start_process(self) -> None:
        # Everything a forked child must not share with its parent is made here.
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._pending: list[RowMaker] = []
        self._submitted = 0
        self._written = 0
        self._thread: threading.Thread | None = None

    def submit(self, make_row: RowMaker) -> None:
        """Queue one row (made by the writer, so costly work like redaction leaves the request).

        Never blocks on the database.
        """
        if self._pid != os.getpid():
            self._start_process()
        with self._cond:
            self._pending.append(make_row)
            self._submitted += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"batch-writer-{self._table.name}", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> bool:
        """Wait until every row queued so far is stored; False if that took too long."""
        if self._pid != os.getpid():
            return True  # nothing was queued in this process yet
        deadline = monotonic() + timeout_s
        with self._cond:
            target = self._submitted
            while self._written < target:
                left = deadline - monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
            self._store(batch)
            with self._cond:
                self._written += len(batch)
                self._cond.notify_all()

    def _store(self, batch: list[RowMaker]) -> None:
        try:
            rows = [make_row() for make_row in batch]
            with self._db.core_write_relaxed() as connection:
                connection.execute(self._statement, rows)
        except Exception:
            # A failed batch must never stop the sim; the rows are reported lost.
            log.exception("%s: %d rows could not be stored", self._table.name, len(batch))


_writers: weakref.WeakKeyDictionary[Database, dict[str, BatchWriter]] = (
    weakref.WeakKeyDictionary()
)
_writers_lock = threading.Lock()


def writer_for(db: Database, table: Table) -> BatchWriter:
    """The writer of `table` in `db` for this process (made on first use)."""
    with _writers_lock:
        per_table = _writers.setdefault(db, {})
        writer = per_table.get(table.name)
        if writer is None:
            writer = per_table[table.name] = BatchWriter(db, table)
        return writer


@atexit.register
def _flush_all_at_exit() -> None:
    """A clean shutdown stores what is still queued."""
    for per_table in list(_writers.values()):
        for writer in per_table.values():
            writer.flush(timeout_s=2.0)
