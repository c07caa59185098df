"""The reliability driver: fundings through both sims as real servers, under crashes and faults.

Both tiers (the pytest fast tier and `make soak`) use it. It starts sim_cms and sim_trustly
under gunicorn (`tests.e2e.pay_stack`: SQLite files, or PostgreSQL databases when
SCANPAY_TEST_DATABASE_URL is set), on real clocks, and drives them over HTTP only:

- `crash_cycles`: per cycle, a `crash` fault (`simkit.crash_points`) is declared on one sim at
  one named point, a batch of fundings is paid at once, the fault kills the process serving
  one of them at that point, and the driver then kills the rest of that server's process
  group with SIGKILL (a machine crash: every other request in flight dies wherever it was)
  and starts it again, timing how long until it answers;
- `network_faults`: per seed, fundings are paid by a few phones at once while, before each
  one, the seed decides whether a one-shot fault is declared on the CMS's funding endpoint:
  request dropped, applied then response dropped, delivered twice, or delayed past TPAS's read
  timeout.

After each cycle or seed, `check` waits until every payment is definite and then demands
exactly-once: one APPLIED funding for each CREDITED payment and none for any other, no
transactionId applied twice, each EGM's meter equal to what TPAS credited on it, the ledger
transactions grown by exactly the credited count, the ledger balanced, and TPAS's
reconciliation against the CMS empty.

The seed fixes the amounts, the sims and points crashed, and the faults declared and in what
order; which funding in flight meets a one-shot fault is decided by timing (requests run
concurrently), so a replay repeats the same faults, not byte for byte the same interleaving.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from simkit.clock import format_instant, monotonic
from simkit.tls import tls_context
from simkit.wait import poll_until
from tests.conftest import DatabaseFactory
from tests.e2e.pay_stack import (
    DEFINITE,
    POLL_S,
    TPAS_CLIENT,
    PayStack,
    Server,
    code_of,
    poll_pause,
    serve_pay_stack,
    unique,
)

FUNDINGS = "/cws/v1/fundings"
PHONE_PAY = "/api/v1/scan/"  # POST /api/v1/scan/<code>/payments: TPAS's funding starts here
READ_TIMEOUT_S = 0.5
SLOW_MS = 900  # a delay fault longer than TPAS's read timeout
POINTS = ("before_commit", "after_commit_before_response", "during_idempotency_write")
NETWORK_FAULTS = ("drop", "apply_then_drop", "duplicate", "delay")
READY_WITHIN_S = 5.0
WORKER_KILLED = "was sent SIGKILL"  # gunicorn's master logs it when a worker dies of SIGKILL
CREDIT_LIMIT = 1_000_000_000
TRUSTLY_TOML = "\n".join([
    "[trustly]", "journal = false", "tpas_recovery_interval_s = 0.5",
    "tpas_lease_s = 3", "tpas_stale_after_s = 3",
    "[trustly.cms]", f"read_timeout_s = {READ_TIMEOUT_S}",
    "retries = { max_attempts = 5, backoff_base_s = 0.1, backoff_cap_s = 1.0 }",
]) + "\n"
CMS_TOML = "[cms]\njournal = false\n"


@dataclass
class Figures:
    """What a run did and measured, for the test's assertions and docs/reliability.md."""

    fundings: int = 0
    credited: int = 0
    not_credited: int = 0
    unanswered: int = 0  # phone requests that died with a server (their payment may exist)
    outcomes: Counter[str] = field(default_factory=Counter)  # "STATUS reason" per payment
    crashes: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)  # what the phones' pay calls got
    ready_s: list[float] = field(default_factory=list)
    settle_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def add(self, other: Figures) -> None:
        """Fold another run's figures into these."""
        self.fundings += other.fundings
        self.credited += other.credited
        self.not_credited += other.not_credited
        self.unanswered += other.unanswered
        self.outcomes.update(other.outcomes)
        self.crashes.update(other.crashes)
        self.faults.update(other.faults)
        self.answers.update(other.answers)
        self.ready_s += other.ready_s
        self.settle_s += other.settle_s
        self.wall_s += other.wall_s

    def summary(self) -> str:
        """One line for progress output and the docs."""
        ready = f"max {max(self.ready_s):.2f}s" if self.ready_s else "-"
        settle = f"max {max(self.settle_s):.1f}s" if self.settle_s else "-"
        return (f"{self.fundings} fundings: {self.credited} credited, {self.not_credited} not "
                f"credited, {self.unanswered} phone requests cut; crashes "
                f"{dict(sorted(self.crashes.items()))}; faults {dict(sorted(self.faults.items()))}"
                f"; phones got {dict(sorted(self.answers.items()))}"
                f"; ready after restart {ready}; all definite after {settle}; "
                f"{self.wall_s:.1f}s; outcomes {dict(sorted(self.outcomes.items()))}")


def _client(base: str) -> httpx.Client:
    """A client that opens a connection per request. A kept-alive one races the server's
    keep-alive timeout on these busy cores: the server closes it just as a request is sent,
    and a request that fails so cannot be told from one a crash cut."""
    return httpx.Client(base_url=base, timeout=30.0, verify=tls_context(),
                        limits=httpx.Limits(max_keepalive_connections=0))


class ReliabilityStack:
    """A running pair of sims plus the driver's per-thread clients."""

    def __init__(self, stack: PayStack) -> None:
        self.stack = stack
        self._local = threading.local()
        self._token_lock = threading.Lock()
        self._token: str | None = None
        self._opened: list[tuple[httpx.Client, httpx.Client]] = []
        self._meter_base: dict[str, int] = {}  # each EGM's meter as the last check left it
        self.settle_within_s = 120.0  # how long a check waits for every payment to be definite
        self.phones = PHONES_SQLITE  # paying at once in `network_faults` (see PHONES_SQLITE)
        self.reconnect()

    # --- per-thread clients -------------------------------------------------------------

    def _clients(self) -> tuple[httpx.Client, httpx.Client]:
        clients: tuple[httpx.Client, httpx.Client] | None = getattr(self._local, "c", None)
        if clients is None or clients[0].is_closed:
            clients = (_client(self.stack.cms.base), _client(self.stack.trustly.base))
            self._local.c = clients
            self._opened.append(clients)
        return clients

    def close(self) -> None:
        """Close every per-thread client (a pool's threads are gone: theirs would leak)."""
        for cms, phone in self._opened:
            cms.close()
            phone.close()
        self._opened.clear()

    def reconnect(self) -> None:
        """New clients for the stack's own calls (after a restart the old ones' connections
        lead to a dead server)."""
        self.close()
        self.stack.close()
        self.stack._cms_http = _client(self.stack.cms.base)
        self.stack._trustly_http = _client(self.stack.trustly.base)

    def _bearer(self, cms: httpx.Client, *, renew: bool = False) -> str:
        with self._token_lock:
            if self._token is None or renew:
                response = cms.post("/cws/v1/oauth/token", auth=TPAS_CLIENT,
                                    data={"grant_type": "client_credentials"})
                response.raise_for_status()
                self._token = str(response.json()["access_token"])
            return self._token

    def meter(self, egm: str) -> int:
        """The EGM's credit meter as the CWS API reports it (this thread's client)."""
        cms, _ = self._clients()
        for renew in (False, True):
            bearer = self._bearer(cms, renew=renew)
            response = cms.get(f"/cws/v1/egms/{egm}", headers={"Authorization": f"Bearer {bearer}"})
            if response.status_code != 401:
                break
        assert response.status_code == 200, response.text
        return int(response.json()["creditMeter"])

    def acquire_qr(self, egm: str) -> str:
        """The CMS acquires a QR from Trustly and shows it on `egm` (retried while a sim is
        down: the driver is the casino floor, which asks again)."""
        cms, _ = self._clients()
        renew = False

        def shown() -> str | None:
            nonlocal renew
            try:
                bearer = self._bearer(cms, renew=renew)
                response = cms.post(f"/cws/v1/egms/{egm}/qr",
                                    headers={"Authorization": f"Bearer {bearer}"})
                if response.status_code == 200:
                    return code_of(response.json()["url"])
                renew = response.status_code == 401
            except httpx.TransportError:
                pass
            return None

        code = poll_until(shown, timeout_s=60, interval_s=0.2)
        if code is None:
            raise AssertionError(f"no QR for {egm} within 60s: {self.stack.logs()}")
        return code

    def pay(self, code: str, amount: int) -> str:
        """The phone's approve button; what came back (`HTTP 201`, or the transport error)."""
        _, phone = self._clients()
        body = {"amount": amount, "currency": "USD",
                "bank": {"username": unique("rel"), "password": "pw"}}
        try:
            response = phone.post(f"/api/v1/scan/{code}/payments", json=body)
        except httpx.TransportError as exc:
            return type(exc).__name__
        if response.status_code < 400:
            return f"HTTP {response.status_code}"
        try:
            body = response.json()
            # Trustly's dialect names the reason inside its one error item
            problem = body.get("code") or body["errors"][0].get("reason")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            problem = response.text[:80]
        return f"HTTP {response.status_code} {problem}"

    def fund(self, egm: str, amount: int, before: Callable[[], None] | None = None) -> str:
        """One funding end to end: a fresh QR on `egm`, then the phone pays it."""
        code = self.acquire_qr(egm)
        if before is not None:
            before()
        return self.pay(code, amount)

    def declare_fault(self, rule: dict[str, Any]) -> None:
        """Declare a fault rule on the CMS from this thread's own client. The control API
        answers only once every worker can see the rule (about 25 ms): phones declaring
        theirs at once wait for that together, not one after another."""
        cms, _ = self._clients()
        response = cms.post("/_sim/faults", headers=self.stack._admin, json=rule)
        assert response.status_code == 201, response.text

    # --- checks -------------------------------------------------------------------------

    def mark(self) -> tuple[str, str]:
        """Both sims' now, minus a margin: what a check after this needs to read is later."""
        margin = timedelta(seconds=5)
        return (format_instant(self.stack.clock("trustly") - margin),
                format_instant(self.stack.clock("cms") - margin))

    def _ours(self, egms: set[str], since: str) -> list[dict[str, Any]]:
        found = self.stack.trustly_admin("GET", "/_sim/payments",
                                         params={"limit": 100_000, "since": since})["payments"]
        return [p for p in found if p["egmId"] in egms]

    def settle(self, egms: set[str], since: str, deadline_s: float = 120.0
               ) -> tuple[list[dict[str, Any]], float]:
        """Wait until every payment on `egms` is definite; (payments, seconds waited)."""
        started = monotonic()
        payments: list[dict[str, Any]] = []

        def definite() -> list[dict[str, Any]] | None:
            nonlocal payments
            payments = self._ours(egms, since)
            if all(p["status"] in DEFINITE for p in payments):
                return payments
            with contextlib.suppress(AssertionError, httpx.TransportError):
                self.stack.trustly_admin("POST", "/_sim/payments/recover", json={})
            return None

        if poll_until(definite, timeout_s=deadline_s, interval_s=0.3) is None:
            open_ = [(p["paymentId"], p["status"]) for p in payments
                     if p["status"] not in DEFINITE]
            raise AssertionError(f"{len(open_)} payments still open after {deadline_s}s: "
                                 f"{open_[:10]}\n{self.stack.logs()}")
        return payments, monotonic() - started

    def check(self, egms: set[str], figures: Figures, ledger_before: dict[str, Any],
              mark: tuple[str, str]) -> None:
        """Every funding on `egms` (new since `mark`) definite and exactly once; the books
        agree (see the module docstring)."""
        payments, waited = self.settle(egms, mark[0], self.settle_within_s)
        figures.settle_s.append(waited)
        applied: dict[str, list[dict[str, Any]]] = {}
        fundings = self.stack.cms_admin("GET", "/_sim/fundings",
                                        params={"since": mark[1]})["fundings"]
        for funding in fundings:
            if funding["egmId"] in egms and funding["outcome"] == "APPLIED":
                applied.setdefault(funding["transactionId"], []).append(funding)
        twice = {tid: rows for tid, rows in applied.items() if len(rows) > 1}
        assert not twice, f"transactionIds applied more than once: {twice}"
        credited = [p for p in payments if p["status"] == "CREDITED"]
        by_tid = {p["transactionId"]: p for p in payments}
        wrong = [p for p in payments
                 if (p["status"] == "CREDITED") != (p["transactionId"] in applied)]
        assert not wrong, f"payments whose CREDITED status disagrees with the CMS: {wrong[:5]}"
        strays = sorted(set(applied) - set(by_tid))
        assert not strays, f"fundings applied for no payment TPAS knows: {strays[:5]}"
        for tid, (row,) in applied.items():
            assert row["amount"] == by_tid[tid]["amount"], (row, by_tid[tid])
        meters = {egm: 0 for egm in egms}
        for p in credited:
            meters[p["egmId"]] += p["amount"]
        with ThreadPoolExecutor(max_workers=8) as pool:
            seen = dict(zip(meters, pool.map(self.meter, meters), strict=True))
        for egm, credited_here in meters.items():
            expected = self._meter_base.get(egm, 0) + credited_here
            assert seen[egm] == expected, (egm, seen[egm], expected)
            self._meter_base[egm] = expected
        ledger = self.stack.ledger()
        assert ledger["transactions"] - ledger_before["transactions"] == len(credited), \
            (ledger, ledger_before, len(credited))
        self.stack.assert_reconciled()
        figures.outcomes.update(f"{p['status']} {p.get('reason') or ''}".strip()
                                for p in payments)
        figures.credited += len(credited)
        figures.not_credited += len(payments) - len(credited)

    def add_egms(self, count: int, prefix: str) -> list[str]:
        """`count` new EGMs with room for any number of fundings."""
        egms = [unique(prefix) for _ in range(count)]

        def add(egm: str) -> None:
            cms, _ = self._clients()
            response = cms.put(f"/_sim/egms/{egm}", headers=self.stack._admin,
                               json={"name": egm, "creditLimit": CREDIT_LIMIT})
            assert response.status_code == 201, response.text

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(add, egms))
        return egms

    def acquire_all(self, egms: list[str]) -> list[str]:
        """A fresh QR on each of `egms`, a few at a time."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(self.acquire_qr, egms))


# Phones paying at once in the network-fault runs. On two cores more than 48 add no fundings
# per second. On PostgreSQL every sim thread that serves a request holds a driver connection
# of its own, and 48 phones brought both sims to the server's default 100 connections (a pay
# answered 500 in CI once); 32 still reached 92. 24 stay well inside it, at about 20 s per
# 1,000 against 15.
PHONES_SQLITE = 48
PHONES_POSTGRESQL = 24


@contextlib.contextmanager
def reliability_stack(workdir: Path, *, threads: int = 32) -> Iterator[ReliabilityStack]:
    """Both sims on real clocks, TPAS with a short CMS read timeout and a quick sweep."""
    databases = DatabaseFactory(workdir)
    try:
        with serve_pay_stack(workdir, databases, trustly_toml=TRUSTLY_TOML, cms_toml=CMS_TOML,
                             controllable=False, threads=threads) as stack:
            driver = ReliabilityStack(stack)
            driver.phones = PHONES_SQLITE if databases.backend == "sqlite" else PHONES_POSTGRESQL
            try:
                yield driver
            finally:
                driver.close()
    finally:
        databases.drop_all()


def _restart(server: Server, figures: Figures) -> None:
    """Kill -9 whatever is left of `server`'s process group and start it again, timed."""
    server.kill()
    started = monotonic()
    server.start()
    figures.ready_s.append(monotonic() - started)


def _crash_fired(driver: ReliabilityStack, sim: str, server: Server) -> bool:
    """The crash rule is spent and gunicorn reported the worker it killed (so the point was
    reached: a rule spent on a request that never got there kills nothing)."""
    admin = driver.stack.cms_admin if sim == "cms" else driver.stack.trustly_admin
    try:
        rules = admin("GET", "/_sim/faults")["faults"]
    except (AssertionError, httpx.TransportError):
        return False  # the worker that answers control calls may be the one that died
    if not rules or any(rule["remaining"] != 0 for rule in rules):
        return False
    log = server.workdir / f"{server.name}-{server.starts}.err"
    return WORKER_KILLED in log.read_text(errors="replace")


TARGETS = tuple((sim, point) for sim in ("cms", "trustly") for point in POINTS)


def _declare_crash(admin: Callable[..., Any], rule: dict[str, Any]) -> None:
    """Declare the crash rule. The rule is in force once committed, before the control API
    answers, so a funding on another thread of the same worker can fire it and kill the
    worker, control request and all: then the rule is looked for, and declared again only
    when it is not there."""
    for _ in range(3):
        try:
            admin("POST", "/_sim/faults", 201, json=rule)
            return
        except httpx.TransportError:
            poll_pause(0.5)  # the master starts a new worker
        with contextlib.suppress(httpx.TransportError):
            if admin("GET", "/_sim/faults")["faults"]:
                return
    raise AssertionError(f"could not declare {rule}")


def crash_cycle(driver: ReliabilityStack, rng: random.Random, cycle: int, in_flight: int,
                target: tuple[str, str], log: Callable[[str], None] = print) -> Figures:
    """One cycle: crash `target` (sim, point) with `in_flight` fundings under way.

    The crash fault is declared once the batch's first payment is CREDITED, so the others
    are at every stage when the fault fires; should the batch finish first, more fundings
    follow, one at a time, until it has fired.
    """
    figures = Figures()
    started = monotonic()
    sim, point = target
    server = driver.stack.cms if sim == "cms" else driver.stack.trustly
    admin = driver.stack.cms_admin if sim == "cms" else driver.stack.trustly_admin
    rule = {"method": "POST", "path": FUNDINGS if sim == "cms" else PHONE_PAY + "*",
            "action": "crash", "point": point, "times": 1}
    egms = driver.add_egms(in_flight, f"C{cycle}")
    amounts = [rng.randrange(100, 10_000) for _ in egms]
    ledger_before, mark = driver.stack.ledger(), driver.mark()
    codes = driver.acquire_all(egms)
    with ThreadPoolExecutor(max_workers=in_flight + 1) as pool:
        paying = [pool.submit(driver.pay, code, amount)
                  for code, amount in zip(codes, amounts, strict=True)]
        end = monotonic() + 60
        poll_until(lambda: any(p["status"] == "CREDITED" for p in driver._ours(set(egms), mark[0]))
                   or all(future.done() for future in paying) or None,
                   timeout_s=end - monotonic(), interval_s=POLL_S)
        _declare_crash(admin, rule)

        def fired() -> bool | None:
            """Whether the fault has fired; another funding whenever none is under way."""
            if _crash_fired(driver, sim, server):
                return True
            if all(future.done() for future in paying):
                egms.extend(driver.add_egms(1, f"C{cycle}"))
                paying.append(pool.submit(driver.fund, egms[-1], rng.randrange(100, 10_000)))
            return None

        # The fault killed the worker serving it ...
        assert poll_until(fired, timeout_s=end - monotonic(), interval_s=POLL_S), \
            f"cycle {cycle}: the crash at {sim} {point} never fired"
        _restart(server, figures)  # ... and now the whole server goes, mid-flight
        outcomes = [future.result() for future in paying]
    driver.reconnect()
    admin("DELETE", "/_sim/faults")
    figures.crashes[f"{sim}:{point}"] += 1
    figures.fundings += len(paying)
    figures.unanswered += sum(not o.startswith("HTTP") for o in outcomes)
    figures.answers.update(outcomes)
    driver.check(set(egms), figures, ledger_before, mark)
    figures.wall_s = monotonic() - started
    log(f"  cycle {cycle}: kill -9 {sim} at {point}: {figures.summary()}")
    return figures


def crash_cycles(driver: ReliabilityStack, seed: int, cycles: int, in_flight: int,
                 log: Callable[[str], None] = print) -> Figures:
    """`cycles` crash cycles from `seed`; every cycle checked before the next. Each six
    cycles crash each sim at each point once, in an order the seed shuffles."""
    rng = random.Random(seed)  # reproducible, not crypto
    total = Figures()
    order = list(TARGETS)
    for cycle in range(cycles):
        if cycle % len(TARGETS) == 0:
            rng.shuffle(order)
        total.add(crash_cycle(driver, rng, cycle, in_flight, order[cycle % len(order)], log))
    return total


def network_faults(driver: ReliabilityStack, seed: int, fundings: int, *,
                   phones: int | None = None, fault_rate: float = 0.25,
                   log: Callable[[str], None] = print) -> Figures:
    """`fundings` fundings from `seed`, a quarter of them meeting a one-shot network fault.

    Each phone pays on an EGM of its own (one QR shown per EGM at a time), so `phones`
    fundings are under way at once (the stack's `phones` unless told)."""
    phones = phones or driver.phones
    rng = random.Random(seed)  # reproducible, not crypto
    figures = Figures()
    started = monotonic()
    egm_count = phones
    egms = driver.add_egms(egm_count, f"N{seed % 10_000}")
    ledger_before, mark = driver.stack.ledger(), driver.mark()
    plan = [(egms[i % egm_count], rng.randrange(100, 10_000),
             rng.choice(NETWORK_FAULTS) if rng.random() < fault_rate else None)
            for i in range(fundings)]

    def declare(kind: str) -> Callable[[], None]:
        def go() -> None:
            rule: dict[str, Any] = {"method": "POST", "path": FUNDINGS, "action": kind,
                                    "times": 1}
            if kind == "delay":
                rule["delayMs"] = SLOW_MS
            driver.declare_fault(rule)
        return go

    lanes: dict[str, threading.Lock] = {egm: threading.Lock() for egm in egms}

    def one(item: tuple[str, int, str | None]) -> str:
        egm, amount, kind = item
        with lanes[egm]:  # one QR on an EGM at a time: a new one replaces the shown one
            return driver.fund(egm, amount, declare(kind) if kind else None)

    with ThreadPoolExecutor(max_workers=phones) as pool:
        outcomes = list(pool.map(one, plan))
    driver.close()
    for rule in driver.stack.cms_admin("GET", "/_sim/faults")["faults"]:
        figures.faults[rule["action"]] += rule["fired"]
    driver.stack.clear_faults()
    figures.fundings = fundings
    figures.unanswered = sum(not o.startswith("HTTP") for o in outcomes)
    figures.answers.update(outcomes)
    refused = {answer: n for answer, n in figures.answers.items()
               if answer not in ("HTTP 201", "HTTP 202")}
    assert not refused, (f"seed {seed}: phones refused: {refused}\n"
                         f"{driver.stack.tracebacks()}\n{driver.stack.logs()}")
    driver.check(set(egms), figures, ledger_before, mark)
    figures.wall_s = monotonic() - started
    log(f"  seed {seed}: {figures.summary()}")
    return figures
