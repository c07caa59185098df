"""Declarative fault plans: failures a tester declares as data, applied at one point per request.

A plan is rows in `sim_faults` ("next 3 POST /cws/v1/fundings: apply, then drop the
connection", "p=0.1 answer 503", "delay 2 s"). `install_faults` consults the plan once per
request, before the view; views never test for faults themselves. Budgets ("times") are
spent inside a write transaction so that many workers together never fire a rule more often
than declared.

Two actions exist for the sims' own reliability tests and are not part of the partner contract
(`ACTIONS`): "duplicate" (the request is served twice, as if the network delivered it twice;
the caller gets the second answer) and "crash" (the serving process kills itself at a named
`point` of the request: `simkit.crash_points`).
"""

from __future__ import annotations

import builtins
import contextlib
import io
import logging
import math
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from flask import Flask, Response, g, request
from sqlalchemy import CursorResult, Engine, Result, delete, event, or_, select

from simkit import crash_points
from simkit.clock import Clock, SystemClock, format_instant, monotonic
from simkit.db import Database
from simkit.errors import BadRequest, SimError
from simkit.models import FaultRuleRow

log = logging.getLogger(__name__)

ACTIONS = ("status", "delay", "drop", "apply_then_drop")  # what a partner's control API takes
SIM_ACTIONS = (*ACTIONS, "duplicate", "crash")  # and the sims' own tests besides
# A crash rule is stored as one action string (the column holds 32 characters).
_CRASH_STORED = {"before_commit": "crash:before_commit",
                 "after_commit_before_response": "crash:after_commit",
                 "during_idempotency_write": "crash:idempotency_write"}
_CRASH_POINT_OF = {stored: point for point, stored in _CRASH_STORED.items()}
REPLAY_ENVIRON_KEY = "simkit.faults.replay"  # the second copy of a duplicated request
METHODS = frozenset({"*", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_DELAY_MS = 120_000  # past this a worker would hit gunicorn's timeout, not the client's
DROP_ENVIRON_KEY = "simkit.faults.drop"
# Never delivered: a dropped exchange is journaled with nginx's "closed without response".
DROPPED_STATUS = 444
_FIELDS = frozenset({"method", "path", "action", "status", "delayMs", "delay_ms",
                     "probability", "times", "point"})

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ConnectionDropped(ConnectionError):
    """Raised out of the WSGI app when a fault drops a connection there is no socket for.

    In-process transports (httpx.WSGITransport, Flask's test client) have no socket to cut;
    this exception reaches the transport instead, which reports a transport error.
    """


@dataclass(frozen=True)
class FaultRule:
    """One declared fault: which requests it matches, what it does, how often it may."""

    path: str
    action: str
    method: str = "*"
    status: int | None = None
    delay_ms: int = 0
    probability: float = 1.0
    times: int | None = None
    id: int | None = field(default=None, compare=False)
    point: str | None = None  # where a "crash" kills the process (`crash_points.POINTS`)

    @classmethod
    def from_json(cls, data: Any) -> FaultRule:
        """Validate a rule as the control API receives it; bad plans raise `BadRequest`."""
        if not isinstance(data, dict):
            raise BadRequest("a fault rule must be a JSON object")
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise BadRequest(f"unknown fault field(s) {unknown}; allowed: {sorted(_FIELDS)}")
        action = _action(data.get("action"))
        rule = cls(
            path=_path(data.get("path")), action=action, method=_method(data.get("method", "*")),
            status=_status(action, data.get("status")),
            delay_ms=_delay(action, data.get("delayMs", data.get("delay_ms"))),
            probability=_probability(data.get("probability", 1.0)),
            times=_times(data.get("times")), point=_point(action, data.get("point")),
        )
        return rule

    def to_json(self) -> dict[str, Any]:
        """The rule as the control API shows it (camelCase)."""
        shown = {"method": self.method, "path": self.path, "action": self.action,
                 "status": self.status, "delayMs": self.delay_ms,
                 "probability": self.probability, "times": self.times}
        if self.point is not None:
            shown["point"] = self.point
        return shown

    @property
    def stored_action(self) -> str:
        """The action as the `sim_faults` row keeps it (a crash carries its point)."""
        return _CRASH_STORED[self.point] if self.point is not None else self.action

    def matches(self, method: str, path: str) -> bool:
        """True when a request with this method and path falls under the rule."""
        if self.method not in ("*", method.upper()):
            return False
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def describe(self) -> str:
        """A short label for the journal's `fault` column, e.g. `status 503 (rule 4)`."""
        detail = {"status": f"status {self.status}", "delay": f"delay {self.delay_ms}ms",
                  "crash": f"crash {self.point}"}
        return f"{detail.get(self.action, self.action)} (rule {self.id})"


def _action(value: Any) -> str:
    if value not in SIM_ACTIONS:
        raise BadRequest(f"action must be one of {list(SIM_ACTIONS)}, got {value!r}")
    return str(value)


def _point(action: str, value: Any) -> str | None:
    if action != "crash":
        if value is not None:
            raise BadRequest("point applies only to action 'crash'")
        return None
    if value not in crash_points.POINTS:
        raise BadRequest(f"action 'crash' needs a point, one of {list(crash_points.POINTS)}")
    return str(value)


def _path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 512:
        raise BadRequest("path must be a string starting with '/' (at most 512 characters)")
    if "*" in value[:-1]:
        raise BadRequest("path may contain '*' only as its last character (a prefix match)")
    if value.startswith("/_sim"):
        raise BadRequest("paths under /_sim/ are never faulted")
    return value


def _method(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in METHODS:
        raise BadRequest(f"method must be '*' or one of {sorted(METHODS - {'*'})}")
    return value.upper()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _status(action: str, value: Any) -> int | None:
    if action != "status":
        if value is not None:
            raise BadRequest("status applies only to action 'status'")
        return None
    if not _is_int(value) or not 400 <= value <= 599:
        raise BadRequest("action 'status' needs an integer status between 400 and 599")
    return int(value)


def _delay(action: str, value: Any) -> int:
    if action != "delay":
        if value not in (None, 0):  # 0 is what to_json shows for other actions
            raise BadRequest("delayMs applies only to action 'delay'")
        return 0
    if not _is_int(value) or not 1 <= value <= MAX_DELAY_MS:
        raise BadRequest(f"action 'delay' needs an integer delayMs between 1 and {MAX_DELAY_MS}")
    return int(value)


def _probability(value: Any) -> float:
    number_ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not number_ok or not math.isfinite(value) or not 0 < value <= 1:
        raise BadRequest("probability must be a number with 0 < probability <= 1")
    return float(value)


def _times(value: Any) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise BadRequest("times must be a positive integer, or null for unlimited")
    return int(value)


def _rule(row: FaultRuleRow) -> FaultRule:
    point = _CRASH_POINT_OF.get(row.action)
    return FaultRule(path=row.path, action="crash" if point else row.action, method=row.method,
                     status=row.status, delay_ms=row.delay_ms, probability=row.probability,
                     times=row.remaining, id=row.id, point=point)


def _row_json(row: FaultRuleRow) -> dict[str, Any]:
    shown = _rule(row).to_json()
    shown.update(id=row.id, remaining=row.remaining, fired=row.fired,
                 createdAt=format_instant(row.created_at))
    del shown["times"]
    return shown


def _deleted(result: Result[Any]) -> int:
    return cast(CursorResult[Any], result).rowcount


def _live() -> Any:
    return or_(FaultRuleRow.remaining.is_(None), FaultRuleRow.remaining > 0)


_LIVE_MATCHERS = (
    "SELECT method, path FROM sim_faults WHERE remaining IS NULL OR remaining > 0"
)
# How old this process's copy of the live rules may be. Every request asks "may a fault
# fire?"; reading the table each time cost more than the QR Code API's own work. A rule added
# through another worker reaches this one within this time, and `add_all` answers only after
# it has passed, so a rule is in force everywhere by the time its caller hears it was added.
MATCHERS_MAX_AGE_S = 0.025
# Once the copy is this old, the next request asks a background thread for a new one and goes
# on with the copy it has: under load the copy is renewed before any request finds it stale.
# (A stale copy sends the QR Code API's inline answer to the thread pool, and at 64 connections
# every request that arrived while one refreshed it did too: 3% of the server's time.)
MATCHERS_REFRESH_AHEAD_S = 0.015
REFRESHER_IDLE_S = 30.0  # a refresher thread not asked for this long ends


class FaultPlan:
    """The fault rules of one sim, kept in its database so every worker shares them."""

    def __init__(self, db: Database, rng: random.Random | None = None,
                 clock: Clock | None = None) -> None:
        self._db = db
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - not crypto
        self._rng_lock = threading.Lock()
        self._clock: Clock = clock if clock is not None else SystemClock()
        # (live (method, path) pairs, monotonic time they were read); replaced, never mutated.
        self._matchers: tuple[tuple[tuple[str, str], ...], float] = ((), -math.inf)
        self._refresher_lock = threading.Lock()
        self._refresher_pid = 0  # the process whose thread `_wanted` wakes (none yet)
        self._wanted = threading.Event()
        self._refreshing = False

    @property
    def engine(self) -> Engine:
        """The engine of the sim's database (where crash points listen)."""
        return self._db.engine

    def add(self, rule: FaultRule) -> int:
        """Declare one rule; returns its id."""
        return self.add_all([rule])[0]

    def add_all(self, rules: Iterable[FaultRule]) -> builtins.list[int]:
        """Declare several rules in one transaction (all or none); returns their ids."""
        now = self._clock.now()
        rows = [FaultRuleRow(method=r.method, path=r.path, action=r.stored_action,
                             status=r.status,
                             delay_ms=r.delay_ms, probability=r.probability, remaining=r.times,
                             fired=0, created_at=now) for r in rules]
        with self._db.write() as session:
            session.add_all(rows)
            session.flush()
            ids = [row.id for row in rows]
        self._forget_matchers()
        time.sleep(MATCHERS_MAX_AGE_S)  # every other worker's copy is now fresh enough
        return ids

    def get(self, rule_id: int) -> dict[str, Any] | None:
        """One rule with its id, remaining budget and fire count, or None."""
        with self._db.read() as session:
            row = session.get(FaultRuleRow, rule_id)
            return _row_json(row) if row is not None else None

    def list(self) -> builtins.list[dict[str, Any]]:
        """Every rule (spent ones too, so a report shows what fired), in declaration order."""
        with self._db.read() as session:
            rows = session.scalars(select(FaultRuleRow).order_by(FaultRuleRow.id))
            return [_row_json(row) for row in rows]

    def remove(self, rule_id: int) -> bool:
        """Delete one rule; False when there was no such rule."""
        with self._db.write() as session:
            statement = delete(FaultRuleRow).where(FaultRuleRow.id == rule_id)
            removed = _deleted(session.execute(statement)) > 0
        self._forget_matchers()  # a stale copy elsewhere only costs `take` a locked re-read
        return removed

    def clear(self) -> int:
        """Delete every rule; returns how many there were."""
        with self._db.write() as session:
            deleted = _deleted(session.execute(delete(FaultRuleRow)))
        self._forget_matchers()
        return deleted

    def take(self, method: str, path: str) -> FaultRule | None:
        """The rule that fires for this request, its budget spent; None when none fires.

        Rules are tried in declaration order; each matching live rule rolls its probability
        and the first that passes fires. A lock-free read first keeps the common case (no
        rule for this path) off the write lock; the decision itself is made again under the
        write lock (BEGIN IMMEDIATE on SQLite, FOR UPDATE on PostgreSQL), so concurrent
        workers never spend one budget twice.
        """
        if not self.may_fire(method, path):
            return None
        with self._db.write() as session:
            statement = select(FaultRuleRow).where(_live()).order_by(FaultRuleRow.id)
            matched = False
            for row in session.scalars(statement.with_for_update()):
                rule = _rule(row)
                if not rule.matches(method, path):
                    continue
                matched = True
                if not self._roll(rule.probability):
                    continue
                row.fired += 1
                if row.remaining is not None:
                    row.remaining -= 1
                    if row.remaining == 0:
                        self._forget_matchers()
                return rule
        if not matched:
            self._forget_matchers()  # the copy promised a rule the table no longer has
        return None

    def may_fire(self, method: str, path: str) -> bool:
        """True when some live rule matches this request (its probability not yet rolled).

        Asked on every request, so it reads this process's copy of the live rules, refreshed
        when older than `MATCHERS_MAX_AGE_S`. A stale copy can only err towards "may fire"
        for a rule already spent or removed: `take` decides again under the write lock.
        """
        rows, read_at = self._matchers
        age = monotonic() - read_at
        if age > MATCHERS_MAX_AGE_S:
            rows = self._read_matchers()
        elif age > MATCHERS_REFRESH_AHEAD_S:
            self._refresh_ahead()
        if not rows:
            return False  # the usual case: no rule declared at all
        method = method.upper()
        return any(
            rule_method in ("*", method)
            and (path.startswith(rule_path[:-1]) if rule_path.endswith("*") else path == rule_path)
            for rule_method, rule_path in rows
        )

    def copy_is_fresh(self) -> bool:
        """True when `may_fire` would answer from this process's copy, without a read."""
        age = monotonic() - self._matchers[1]
        if age > MATCHERS_REFRESH_AHEAD_S:
            self._refresh_ahead()
        return age <= MATCHERS_MAX_AGE_S

    def _read_matchers(self) -> tuple[tuple[str, str], ...]:
        """Read the live rules into this process's copy (stamped with when the read began, so
        a copy is never thought newer than it is)."""
        started = monotonic()
        rows = tuple((str(m), str(p)) for m, p in self._db.hot_read(_LIVE_MATCHERS))
        self._matchers = (rows, started)
        return rows

    def _refresh_ahead(self) -> None:
        """Have this process's refresher thread read the rules, unless it is already at it."""
        if self._refresher_pid != os.getpid():
            self._start_refresher()
        if self._refreshing:
            return
        self._refreshing = True
        self._wanted.set()

    def _start_refresher(self) -> None:
        # A thread does not survive `fork`: a worker starts its own (and forgets the flag its
        # parent may have left set).
        with self._refresher_lock:
            if self._refresher_pid == os.getpid():
                return
            self._wanted = threading.Event()
            self._refreshing = False
            threading.Thread(target=self._refresh_when_wanted, args=(self._wanted,),
                             name="fault-rules", daemon=True).start()
            self._refresher_pid = os.getpid()

    def _refresh_when_wanted(self, wanted: threading.Event) -> None:
        while wanted.wait(REFRESHER_IDLE_S):
            wanted.clear()
            try:
                self._read_matchers()
            except Exception:  # the request path reads them itself once the copy is stale
                log.exception("faults: the live rules could not be read ahead of need")
            finally:
                self._refreshing = False
        # Idle: the thread ends (an idle sim, or a test's app long gone, keeps none); the next
        # request that finds the copy getting old starts another.
        with self._refresher_lock:
            if self._wanted is wanted:
                self._refresher_pid = 0
                self._refreshing = False

    def _forget_matchers(self) -> None:
        self._matchers = ((), -math.inf)

    def _roll(self, probability: float) -> bool:
        if probability >= 1:
            return True
        with self._rng_lock:
            return self._rng.random() < probability


def _is_control_path(path: str) -> bool:
    return path == "/_sim" or path.startswith("/_sim/")


def install_faults(app: Flask, plan: FaultPlan, *,
                   idempotency_tables: Iterable[str] = ()) -> None:
    """Apply `plan` to every request `app` serves outside `/_sim/`, at one point, before the view.

    "status" raises `SimError("FAULT_INJECTED", status, ...)` so each sim answers in its own
    error dialect; "delay" waits real time (a slow network) and goes on; "drop" answers
    nothing; "apply_then_drop" lets the view run and commit, then drops; "duplicate" serves a
    copy of the request first, its answer lost, then the request itself; "crash" arms its
    point (`idempotency_tables` are the tables whose INSERT is `during_idempotency_write`).
    The label of the fault that fired is left in `flask.g.fault` for the journal.
    """
    tables = tuple(idempotency_tables)

    def consult() -> Response | None:
        if _is_control_path(request.path) or request.environ.get(REPLAY_ENVIRON_KEY):
            return None
        rule = plan.take(request.method, request.path)
        if rule is None:
            return None
        g.fault = rule.describe()
        if rule.action == "crash":
            _hook_crash_points(plan.engine, tables)
        return _apply(rule, app)

    app.before_request(consult)
    app.wsgi_app = _DropMiddleware(app.wsgi_app)  # type: ignore[method-assign]


def _apply(rule: FaultRule, app: Flask) -> Response | None:
    if rule.action == "crash":
        assert rule.point is not None
        crash_points.arm(rule.point)
        return None
    if rule.action == "duplicate":
        _serve_a_copy(app)
        return None
    if rule.action == "status":
        raise SimError("FAULT_INJECTED", rule.status or 500, "injected fault")
    if rule.action == "delay":
        threading.Event().wait(rule.delay_ms / 1000)  # simulated network latency
        return None
    request.environ[DROP_ENVIRON_KEY] = True
    if rule.action == "drop":
        return Response(status=DROPPED_STATUS)
    return None  # apply_then_drop: the view runs; the middleware drops its response


def _serve_a_copy(app: Flask) -> None:
    """Serve a copy of this request through the whole app (faults skipped), answer discarded.

    From the sim's side this is the network delivering one request twice: the copy is
    decided and committed first, then the original is served and answered.
    """
    body = request.get_data(cache=True)
    environ = {key: value for key, value in request.environ.items()
               if not key.startswith(("werkzeug.", "simkit."))}
    environ.update({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
                    REPLAY_ENVIRON_KEY: True})
    with app.app_context():  # a `flask.g` of its own: nothing leaks into the original
        answer = app.wsgi_app(environ, lambda *_args, **_kwargs: lambda _data: None)
        try:
            for _chunk in answer:
                pass
        finally:
            close = getattr(answer, "close", None)
            if callable(close):
                close()


_hooked_engines: set[int] = set()
_hook_lock = threading.Lock()


def _hook_crash_points(engine: Engine, tables: tuple[str, ...]) -> None:
    """Listen for the database points of `crash_points` on `engine`, the first time a crash
    fault fires in this process (until then no request pays for the listeners).

    A statement sent on a connection in autocommit commits as it ends (PostgreSQL's
    single-statement writes), so `before_commit` is also reached just before such a
    statement that writes; `during_idempotency_write` is reached just before a statement that
    inserts into one of `tables` is sent (inside its transaction, or as its own).
    """
    with _hook_lock:
        if id(engine) in _hooked_engines:
            return
        _hooked_engines.add(id(engine))
    crash_points.watch_idempotency_tables(tables)

    def before_commit(_connection: Any) -> None:
        crash_points.reached(crash_points.BEFORE_COMMIT)

    def before_execute(connection: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if crash_points.armed() is None:
            return
        autocommit = connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        crash_points.before_statement(statement, autocommit=autocommit)

    event.listen(engine, "commit", before_commit)
    event.listen(engine, "before_cursor_execute", before_execute)


class _DropMiddleware:
    """Cuts the connection after the app has run when a fault asked for it.

    Dropping here, outside Flask, means every after-request hook (the journal) has run and
    the view's transaction has committed, and the response is never written. A crash armed
    for `after_commit_before_response` fires here too, and any point left armed is disarmed.
    """

    def __init__(self, app: WSGIApp) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        try:
            result = self._app(environ, start_response)
            if crash_points.armed() is not None:
                crash_points.reached(crash_points.AFTER_COMMIT_BEFORE_RESPONSE)
        finally:
            if crash_points.armed() is not None:
                crash_points.disarm()
        if not environ.get(DROP_ENVIRON_KEY):
            return result
        close = getattr(result, "close", None)
        if callable(close):
            close()
        drop_connection(environ)
        return []


def drop_connection(environ: dict[str, Any]) -> None:
    """Cut the client's connection so it sees EOF/reset and no response.

    The socket is shut down, not closed: the server still owns the descriptor and closes it
    itself (its write fails with EPIPE, which gunicorn and werkzeug treat as a client that
    went away). Closing it here could let the descriptor number be reused by another
    connection while the server still writes to it.
    """
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if sock is None:
        raise ConnectionDropped("fault injection dropped the connection")
    with contextlib.suppress(OSError):  # already gone: the client sees the same thing
        sock.shutdown(socket.SHUT_RDWR)
