"""Writes journal entries off the request path: a queue per database and one batch writer.

Recording an exchange used to cost a write transaction (and, on SQLite, a durable commit) on
every request, which made a journaled sim about 2.5 times as costly to call. Now a request only
captures what it saw (a few references, no parsing) and hands it over; a background thread
redacts the captured exchanges and stores every waiting one in a single INSERT batch, so the
cost per entry falls as load rises.

What is lost by this: an entry is stored a moment after its response leaves, and a process
killed in that moment loses it (the journal is a diagnostic record, not money). Readers in the
same process call `flush()` first, so a query always sees every exchange this process served
before it; another worker's entries appear within the writer's latency (well under a
millisecond when idle).

One writer per `Database` object and process: `Journal` objects built on the same database
share it, and a forked worker starts its own (a thread does not survive `fork`).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert

from simkit.clock import monotonic
from simkit.db import Database
from simkit.models import JournalEntry

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 10.0
MAX_BATCH = 500  # entries per INSERT; a backlog is written in several batches


@dataclass(frozen=True)
class Exchange:
    """One request and its response as captured on the request path, not yet redacted."""

    correlation_id: str
    at: datetime
    method: str
    path: str
    query: str
    status: int
    latency_ms: int
    request_headers: Mapping[str, str] | Iterable[tuple[str, str]]
    request_body: bytes | str
    response_headers: Mapping[str, str] | Iterable[tuple[str, str]]
    response_body: bytes | str
    fault: str | None = None


Redactor = Callable[[Exchange], dict[str, Any]]


class JournalWriter:
    """A FIFO of captured exchanges and the thread that stores them in batches."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._statement = insert(JournalEntry)
        self._start_process()

    def _start_process(self) -> None:
        # Everything a forked child must not share with its parent is made here.
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._pending: list[tuple[Exchange, Redactor]] = []
        self._submitted = 0
        self._written = 0
        self._thread: threading.Thread | None = None

    def submit(self, exchange: Exchange, redact: Redactor) -> None:
        """Queue one exchange and how to redact it; stored shortly, never blocks on the database."""
        if self._pid != os.getpid():
            self._start_process()
        with self._cond:
            self._pending.append((exchange, redact))
            self._submitted += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="journal-writer", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> bool:
        """Wait until every exchange submitted so far is stored; False if that took too long."""
        if self._pid != os.getpid():
            return True  # nothing was submitted in this process yet
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

    def _store(self, batch: list[tuple[Exchange, Redactor]]) -> None:
        try:
            rows = [redact(exchange) for exchange, redact in batch]
            with self._db.core_write_relaxed() as connection:
                connection.execute(self._statement, rows)
        except Exception:
            # A journal failure must never stop the sim; the entries are reported lost.
            log.exception("journal: %d entries could not be stored", len(batch))


_writers: weakref.WeakKeyDictionary[Database, JournalWriter] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


def writer_for(db: Database) -> JournalWriter:
    """The writer of `db` in this process (made on first use)."""
    with _writers_lock:
        writer = _writers.get(db)
        if writer is None:
            writer = _writers[db] = JournalWriter(db)
        return writer


@atexit.register
def _flush_all_at_exit() -> None:
    """A clean shutdown stores what is still queued."""
    for writer in list(_writers.values()):
        writer.flush(timeout_s=2.0)
