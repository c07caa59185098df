"""The CMS's SQLite storage: one file, one connection per request.

Writers serialise on SQLite's own write lock (`BEGIN IMMEDIATE`), which is the lock a funding
is decided under: the replay lookup, the checks, the credit and the stored decision all happen
inside one such transaction.
"""

from __future__ import annotations

import queue
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS egms (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, state TEXT NOT NULL,
    credit_meter INTEGER NOT NULL, credit_limit INTEGER NOT NULL, currency TEXT NOT NULL,
    current_qr TEXT
);
CREATE TABLE IF NOT EXISTS qrs (
    code TEXT PRIMARY KEY, egm_id TEXT NOT NULL, url TEXT NOT NULL,
    expires_at TEXT NOT NULL, rotates_at TEXT NOT NULL, shown_at TEXT NOT NULL,
    funded_by TEXT
);
CREATE TABLE IF NOT EXISTS fundings (
    transaction_id TEXT PRIMARY KEY, request_key TEXT NOT NULL, egm_id TEXT NOT NULL,
    amount INTEGER NOT NULL, currency TEXT NOT NULL, ubai TEXT NOT NULL,
    qr_token_id TEXT NOT NULL, outcome TEXT NOT NULL, http_status INTEGER NOT NULL,
    code TEXT, body TEXT NOT NULL, decided_at TEXT NOT NULL, gaming_day TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fundings_usage ON fundings (ubai, gaming_day, outcome);
CREATE TABLE IF NOT EXISTS limits (
    ubai TEXT PRIMARY KEY, daily_limit INTEGER NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY, expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT, txn TEXT NOT NULL, account TEXT NOT NULL,
    amount INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, method TEXT NOT NULL,
    path TEXT NOT NULL, query TEXT NOT NULL, status INTEGER, latency_ms INTEGER,
    correlation_id TEXT, request_headers TEXT, request_body TEXT, response_body TEXT,
    fault TEXT
);
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY AUTOINCREMENT, method TEXT NOT NULL, path TEXT NOT NULL,
    action TEXT NOT NULL, status INTEGER, delay_ms INTEGER, probability REAL,
    remaining INTEGER
);
"""


class Store:
    """Opens connections to the CMS's database file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        with self.read() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    def connect(self) -> sqlite3.Connection:
        """A connection in autocommit mode (transactions are explicit) that waits for locks."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                             check_same_thread=False)
        db.row_factory = sqlite3.Row
        # WAL with NORMAL: a commit survives a crash of this process (not of the machine's
        # power) without an fsync per request.
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    @contextmanager
    def _borrowed(self) -> Iterator[sqlite3.Connection]:
        """A pooled connection (closing one per request would checkpoint the WAL each time)."""
        try:
            db = self._idle.get_nowait()
        except queue.Empty:
            db = self.connect()
        try:
            yield db
        finally:
            self._idle.put(db)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding SQLite's write lock from its first statement."""
        with self._borrowed() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads outside any write transaction."""
        with self._borrowed() as db:
            yield db

    def seed(self, egm_ids: list[str], credit_limit: int, currency: str) -> None:
        """Create the casino floor once (existing EGMs keep their meters)."""
        with self.write() as db:
            for egm_id in egm_ids:
                db.execute("INSERT OR IGNORE INTO egms VALUES (?, ?, 'IDLE', 0, ?, ?, NULL)",
                           (egm_id, f"Slot {egm_id}", credit_limit, currency))
