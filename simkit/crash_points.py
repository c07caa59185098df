"""Named points of a request where a `crash` fault kills the serving process (`kill -9`).

A crash fault (`simkit.faults`, action "crash" with a `point`) arms one point for the request
it fires on, on that request's thread; when the request's work reaches the point, this
process sends itself SIGKILL, as a power cut there would. The points are reached through
hooks, never through branches in a sim's own code:

- `before_commit`: the request's database transaction has run every statement and is about
  to COMMIT (an SQLAlchemy "commit" event; PostgreSQL's pipelined hot transaction calls it
  before sending its last statement and COMMIT; a write sent in autocommit, which commits
  as it ends, reaches it just before it is sent, whether through SQLAlchemy or on the driver
  connection of `Database.hot_read`: `before_statement`);
- `during_idempotency_write`: the statement that inserts the row recording a decided request
  under its idempotency key (the sim names its table: the CMS `funding_records`, TPAS
  `payments`) is about to be sent; on SQLite the transaction's earlier statements (the CMS's
  ledger legs) have run and nothing is committed;
- `after_commit_before_response`: the request committed and its answer is built but not sent.

Only the serving process dies (a gunicorn master starts a new worker); a test that wants the
whole server down, as a machine crash would, kills the rest of its process group itself.
A point never reached (say a replayed funding, which writes nothing) kills nothing: the
point is disarmed when the request ends.
"""

from __future__ import annotations

import os
import signal
import threading

BEFORE_COMMIT = "before_commit"
AFTER_COMMIT_BEFORE_RESPONSE = "after_commit_before_response"
DURING_IDEMPOTENCY_WRITE = "during_idempotency_write"
POINTS = (BEFORE_COMMIT, AFTER_COMMIT_BEFORE_RESPONSE, DURING_IDEMPOTENCY_WRITE)

_armed = threading.local()


def arm(point: str) -> None:
    """Kill this process when this thread next reaches `point` (until `disarm`)."""
    _armed.point = point


def disarm() -> None:
    """Forget any point armed on this thread (the request ended without reaching it)."""
    _armed.point = None


def armed() -> str | None:
    """The point armed on this thread, if any (one attribute read: cheap on every statement)."""
    return getattr(_armed, "point", None)


def reached(point: str) -> None:
    """The thread's work is at `point`: die at once if a crash fault armed it."""
    if getattr(_armed, "point", None) == point:
        os.kill(os.getpid(), signal.SIGKILL)


_WRITES = ("INSERT", "UPDATE", "DELETE", "WITH")
_idempotency_inserts: frozenset[str] = frozenset()
_tables_lock = threading.Lock()


def watch_idempotency_tables(tables: tuple[str, ...]) -> None:
    """Name the tables whose INSERT is `during_idempotency_write` (each sim names its own; an
    embedded deployment runs both sims in one process, so the names add up)."""
    global _idempotency_inserts  # noqa: PLW0603 - one process-wide set, written rarely
    with _tables_lock:
        _idempotency_inserts = _idempotency_inserts | {
            f"INSERT INTO {table}".upper() for table in tables}


def before_statement(sql: str, *, autocommit: bool) -> None:
    """`sql` is about to be sent: reach `during_idempotency_write` if it inserts into a
    watched table, and, when it is sent in autocommit (it commits as it ends),
    `before_commit` if it writes (a WITH counts: the hot statements that write start with
    one)."""
    point = getattr(_armed, "point", None)
    if point is None:
        return
    upper = sql.lstrip().upper()
    if point == DURING_IDEMPOTENCY_WRITE and any(i in upper for i in _idempotency_inserts):
        reached(point)
    if autocommit and point == BEFORE_COMMIT and upper.startswith(_WRITES):
        reached(point)
