"""Scale-out: two `trustly` and two `cms` services on the same two PostgreSQL databases.

Each replica is the compose file's own service (granian's RSGI front, 2 workers, each
worker building the app; the file's environment; `tests.e2e.compose_local`), replica i's CMS
wired to replica i's Trustly and back. All four servers start at the same moment on the empty
databases: the start-up lock lets one worker migrate and seed while the others wait.

Players pay concurrently and across replicas: a QR the CMS of one replica acquired is paid
through the Trustly of the other, two phones on the two Trustlys race for the same QR, and
players of one bank account race on the two Trustlys for a daily limit with room for
LIMIT_ROOM payments. Whatever process served a request, exactly-once holds (each
transactionId applied at most once, and only for a CREDITED payment; each EGM's meter is
the sum of its credited payments; one success per QR) and no limit is exceeded.

Everything is read over HTTP, through both replicas, which must agree.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import pytest

from sim_cms.limits import gaming_day
from sim_cms.settings import CmsSettings
from sim_trustly.microsite.demo_bank import ubai_for
from simkit.clock import parse_instant
from simkit.wait import poll_until
from tests.e2e.compose_local import ComposeServer, LocalCompose, ScratchPostgres, initdb_databases
from tests.e2e.pay_stack import DEFINITE, PayStack, unique

# Not marked `db`: these services always run on the machine's PostgreSQL (ScratchPostgres),
# so the suite's PostgreSQL pass would only run them a second time.
pytestmark = pytest.mark.slow

REPLICAS = 2
BULK_EGMS, BULK_ROUNDS = 12, 4  # 48 payments, one thread per EGM
QR_RACES = 8  # QRs each paid by two phones at once, one on each Trustly
LIMIT_RACERS, LIMIT_ROOM, LIMIT_AMOUNT = 8, 3, 500
LIMIT_CEILING = (1 + LIMIT_ROOM) * LIMIT_AMOUNT  # one earlier top-up, then room for LIMIT_ROOM
PHONE_TIMEOUT_S = 120.0
BARRIER_S = 120.0
SETTLE_DEADLINE_S = 120.0
CMS_DEFAULTS = CmsSettings(database_url="sqlite://")  # compose sets no [cms] config


@dataclass(frozen=True)
class Attempt:
    """One phone's payment attempt as the phone saw it (status 0: no answer)."""

    scenario: str
    egm_id: str
    code: str
    amount: int
    status: int
    body: dict[str, Any]
    error: str = ""


def _start_together(*servers: ComposeServer) -> None:
    """Start servers at once, on the same databases too (each waits, bounded, for readiness)."""
    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        for future in [pool.submit(server.start) for server in servers]:
            future.result()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[PayStack]]:
    """Two (trustly, cms) replicas of the compose services on one pair of databases."""
    postgres = ScratchPostgres("scaleout")
    postgres.require()
    root = tmp_path_factory.mktemp("scale-out")
    servers: list[ComposeServer] = []
    stacks: list[PayStack] = []
    try:
        databases = {name: postgres.create(name) for name in initdb_databases()}
        pairs = []
        for _ in range(REPLICAS):
            local = LocalCompose(root, databases)
            pairs.append((local.server("trustly"), local.server("cms")))
        servers += [server for pair in pairs for server in pair]
        _start_together(*servers)  # every replica's workers race for the empty databases
        stacks += [PayStack(cms, trustly, controllable=False,
                            admin_token=trustly.service.env["SCANPAY_ADMIN_TOKEN"])
                   for trustly, cms in pairs]
        yield stacks
    finally:
        for stack in stacks:
            stack.close()
        for server in servers:
            server.interrupt()
        for server in servers:
            server.stop()
        postgres.drop_all()


class Phones:
    """Drivers of their own per thread (a PayStack's clients serve one thread at a time)."""

    def __init__(self, replicas: list[PayStack]) -> None:
        self.replicas = replicas
        self._local = threading.local()
        self._opened: list[PayStack] = []
        self._lock = threading.Lock()

    def driver(self, replica: int) -> PayStack:
        """This thread's driver of replica `replica` (CMS and Trustly of that replica)."""
        drivers: dict[int, PayStack] | None = getattr(self._local, "drivers", None)
        if drivers is None:
            drivers = self._local.drivers = {}
        if replica not in drivers:
            shared = self.replicas[replica]
            drivers[replica] = PayStack(shared.cms, shared.trustly, controllable=False,
                                        admin_token=shared.admin_token)
            with self._lock:
                self._opened.append(drivers[replica])
        return drivers[replica]

    def pay(self, scenario: str, replica: int, egm_id: str, code: str, amount: int,
            username: str) -> Attempt:
        """Open the scan and pay it through replica `replica`'s Trustly."""
        base = self.replicas[replica].trustly.base
        body = {"amount": amount, "currency": "USD",
                "bank": {"username": username, "password": "pw"}}
        try:
            with httpx.Client(base_url=base, timeout=PHONE_TIMEOUT_S) as phone:
                phone.get(f"/api/v1/scan/{code}")
                response = phone.post(f"/api/v1/scan/{code}/payments", json=body)
        except httpx.HTTPError as exc:
            return Attempt(scenario, egm_id, code, amount, 0, {}, repr(exc))
        try:
            answer = response.json()
        except ValueError:
            answer = {"text": response.text[:500]}
        return Attempt(scenario, egm_id, code, amount, response.status_code, answer)

    def close(self) -> None:
        """Close every thread's drivers."""
        for driver in self._opened:
            driver.close()


def bulk_player(phones: Phones, index: int, egm_id: str) -> list[Attempt]:
    """BULK_ROUNDS payments on one EGM, each QR acquired on one replica and paid on the other."""
    attempts = []
    for round_ in range(BULK_ROUNDS):
        acquirer = (index + round_) % REPLICAS
        code = phones.driver(acquirer).acquire_qr(egm_id)
        amount = 100 * (1 + (index + round_) % 9)
        attempts.append(phones.pay("bulk", (acquirer + 1) % REPLICAS, egm_id, code, amount,
                                   unique("player")))
    return attempts


def racer(barrier: threading.Barrier, job: Callable[[], Attempt]) -> Attempt:
    """Wait for the other racers, then run `job`."""
    barrier.wait()
    return job()


def settle_all(stack: PayStack) -> list[dict[str, Any]]:
    """Every payment once none is open (the replicas' sweeps finish what a request parked)."""
    still_open: list[dict[str, Any]] = []

    def all_definite() -> list[dict[str, Any]] | None:
        nonlocal still_open
        payments = stack.payments()
        still_open = [p for p in payments if p["status"] not in DEFINITE]
        return None if still_open else payments

    settled = poll_until(all_definite, timeout_s=SETTLE_DEADLINE_S, interval_s=0.25)
    if settled is None:
        raise AssertionError(f"{len(still_open)} payments still open: {still_open[:3]}")
    return settled


def test_two_trustly_and_two_cms_processes_pay_concurrently_exactly_once_within_limits(
        replicas: list[PayStack]) -> None:
    first = replicas[0]
    bulk_egms = [first.add_egm("BULK") for _ in range(BULK_EGMS)]
    race_egms = [first.add_egm("QRRACE") for _ in range(QR_RACES)]
    limit_egms = [first.add_egm("LIMIT") for _ in range(LIMIT_RACERS)]
    # The QRs the racers scan, each acquired by one CMS replica or the other.
    race_codes = [replicas[n % REPLICAS].acquire_qr(egm) for n, egm in enumerate(race_egms)]
    limit_codes = [replicas[n % REPLICAS].acquire_qr(egm) for n, egm in enumerate(limit_egms)]
    # The account paid once earlier today (so its usage row exists, as on a real floor: the
    # case where a CMS that read usage without a lock would let several racers through).
    account = unique("limited")
    ubai = ubai_for(account)
    replicas[1].set_limit(ubai, LIMIT_CEILING)
    top_up_egm = first.add_egm("LIMIT")
    top_up = replicas[1].pay(replicas[0].acquire_qr(top_up_egm), LIMIT_AMOUNT, username=account)
    assert top_up["status"] == "CREDITED", top_up

    phones = Phones(replicas)
    qr_barriers = [threading.Barrier(REPLICAS, timeout=BARRIER_S) for _ in race_codes]
    limit_barrier = threading.Barrier(LIMIT_RACERS, timeout=BARRIER_S)
    threads = BULK_EGMS + QR_RACES * REPLICAS + LIMIT_RACERS
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="phone") as pool:
        bulk = [pool.submit(bulk_player, phones, n, egm) for n, egm in enumerate(bulk_egms)]
        races = [pool.submit(racer, qr_barriers[n], partial(
                    phones.pay, "qr-race", r, race_egms[n], race_codes[n], 700, unique("player")))
                 for n in range(QR_RACES) for r in range(REPLICAS)]
        races += [pool.submit(racer, limit_barrier, partial(
                     phones.pay, "limit-race", n % REPLICAS, limit_egms[n], limit_codes[n],
                     LIMIT_AMOUNT, account))
                  for n in range(LIMIT_RACERS)]
        attempts = [a for future in bulk for a in future.result()]
        attempts += [future.result() for future in races]
    phones.close()

    logs = first.logs()
    broken = [a for a in attempts if a.status == 0 or a.status >= 500]
    assert broken == [], f"{broken[:5]}\n{logs}"
    payments = settle_all(first)
    assert sorted(p["paymentId"] for p in replicas[1].payments()) \
        == sorted(p["paymentId"] for p in payments)
    credited = [p for p in payments if p["status"] == "CREDITED"]

    # Every payment a phone started is known, and the bulk's all credited.
    started = {a.body["paymentId"] for a in attempts if a.status in (201, 202)}
    assert started | {top_up["paymentId"]} == {p["paymentId"] for p in payments}
    by_id = {p["paymentId"]: p for p in payments}
    bulk_ids = [a.body["paymentId"] for a in attempts if a.scenario == "bulk"]
    assert len(bulk_ids) == BULK_EGMS * BULK_ROUNDS
    assert {by_id[pid]["status"] for pid in bulk_ids} == {"CREDITED"}

    # One success per QR; a raced QR made exactly one payment, the other phone got 409.
    per_code = Counter(p["qrCode"] for p in credited)
    assert max(per_code.values()) == 1
    for code in race_codes:
        tries = [a for a in attempts if a.code == code]
        # 202: the winner's CMS call outlasted TPAS's read timeout (a loaded machine); the
        # payment is then finished by inquiry or the sweep, and checked below like any other.
        assert sorted(a.status for a in tries) in ([201, 409], [202, 409]), tries
        assert "QR_CODE_USED" in str(next(a.body for a in tries if a.status == 409))
        assert [p["status"] for p in payments if p["qrCode"] == code] == ["CREDITED"]

    # The daily limit: exactly LIMIT_ROOM of the racers credited, the rest refused for it.
    limited = [p for p in payments if p["ubai"] == ubai]
    assert len(limited) == 1 + LIMIT_RACERS
    assert Counter(p["status"] for p in limited) == {
        "CREDITED": 1 + LIMIT_ROOM, "REJECTED_VOIDED": LIMIT_RACERS - LIMIT_ROOM}
    assert {p.get("reason") for p in limited if p["status"] != "CREDITED"} \
        == {"DAILY_LIMIT_EXCEEDED"}
    for stack in replicas:
        view = stack.limit(ubai)
        assert view["usedToday"] == LIMIT_CEILING == view["dailyLimit"], view

    # Exactly once: one applied funding per credited payment, none for any other.
    fundings = first.fundings()
    assert sorted(f["transactionId"] for f in replicas[1].fundings()) \
        == sorted(f["transactionId"] for f in fundings)
    applied = [f for f in fundings if f["outcome"] == "APPLIED"]
    assert max(Counter(f["transactionId"] for f in fundings).values()) == 1
    assert sorted(f["transactionId"] for f in applied) \
        == sorted(p["transactionId"] for p in credited)
    for funding in applied:
        assert funding["amount"] == next(p["amount"] for p in credited
                                         if p["transactionId"] == funding["transactionId"])

    # No UBAI over its limit on any gaming day.
    used: dict[tuple[str, Any], int] = defaultdict(int)
    for funding in applied:
        day = gaming_day(parse_instant(funding["decidedAt"]), CMS_DEFAULTS)
        used[(funding["ubai"], day)] += funding["amount"]
    for (owner, _), total in used.items():
        ceiling = LIMIT_CEILING if owner == ubai else CMS_DEFAULTS.default_daily_limit
        assert total <= ceiling, (owner, total)

    # Each meter is the sum of its credited payments, through either CMS.
    expected: dict[str, int] = defaultdict(int)
    for payment in credited:
        expected[payment["egmId"]] += payment["amount"]
    for egm in [*bulk_egms, *race_egms, *limit_egms, top_up_egm]:
        assert [stack.meter(egm) for stack in replicas] == [expected[egm]] * REPLICAS, egm

    ledger = first.ledger()
    assert ledger["transactions"] == len(credited)
    assert ledger["appliedTotal"] == sum(p["amount"] for p in credited)
    for stack in replicas:
        stack.assert_reconciled()
    assert len(credited) == BULK_EGMS * BULK_ROUNDS + QR_RACES + 1 + LIMIT_ROOM
