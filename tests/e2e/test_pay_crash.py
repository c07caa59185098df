"""`kill -9` of sim_trustly while 20 payments wait on the CMS: nothing lost, nothing doubled.

Twenty phones pay twenty QR codes at once while the CMS holds every funding request for a
few seconds (a delay fault). Once all twenty payments are in FUNDING and every request has
reached the CMS, sim_trustly's whole gunicorn process group (master and workers) is killed
with SIGKILL, and started again on the same port and database. Its start-up recovery sweep
must bring every payment to a definite state; the delayed requests, which the CMS finishes
after the crash, must not credit anything twice: one applied funding per transactionId, one
ledger transaction per payment, meters equal to what TPAS credited, reconciliation empty.

Both sims run on real clocks here: the sweep's leases and backoffs pass in real time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from simkit.wait import poll_until
from tests.conftest import DatabaseFactory
from tests.e2e.pay_stack import DEFINITE, POLL_S, PayStack, serve_pay_stack, unique

pytestmark = [pytest.mark.db, pytest.mark.slow]

PAYMENTS = 20
AMOUNT = 2000
HOLD_MS = 12_000  # how long the CMS holds each funding request: the window for the kill
KILL_WITHIN_S = HOLD_MS / 1000 - 3  # all 20 held (about 3 s on 2 busy cores), with room to kill
TRUSTLY_TOML = "\n".join([
    "[trustly]", "journal = false", "tpas_recovery_interval_s = 1",
    "[trustly.cms]", "read_timeout_s = 30",  # TPAS must still be waiting when it is killed
]) + "\n"
FUNDINGS = "/cws/v1/fundings"


@pytest.fixture
def stack(tmp_path: Path, databases: DatabaseFactory) -> Iterator[PayStack]:
    """Both sims on real clocks, with threads enough for 20 payments in flight at once."""
    with serve_pay_stack(tmp_path, databases, trustly_toml=TRUSTLY_TOML, controllable=False,
                         threads=24) as running:
        yield running


def _phone(stack: PayStack, code: str, barrier: threading.Barrier,
           outcomes: list[str], lock: threading.Lock) -> None:
    with stack.phone_client() as client:
        barrier.wait()
        try:
            response = stack.pay_response(code, AMOUNT, username=unique("crash"), client=client)
            outcome = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:  # the server died under the request: expected
            outcome = type(exc).__name__
    with lock:
        outcomes.append(outcome)


def _ours(stack: PayStack, egms: set[str]) -> list[dict[str, Any]]:
    return [p for p in stack.payments() if p["egmId"] in egms]


def _wait_until(what: str, check: Any, deadline_s: float, stack: PayStack) -> Any:
    """Poll `check()` until it returns something truthy, or fail after `deadline_s`."""
    found = poll_until(lambda: check() or None, timeout_s=deadline_s, interval_s=POLL_S)
    if found is None:
        raise AssertionError(f"{what}: not within {deadline_s}s\n{stack.logs()}")
    return found


def _all_funding_and_sent(stack: PayStack, egms: set[str]) -> bool:
    """Every payment is in FUNDING and the CMS has taken every request into its delay."""
    funding = [p for p in _ours(stack, egms) if p["status"] == "FUNDING"]
    (rule,) = stack.cms_admin("GET", "/_sim/faults")["faults"]
    return len(funding) == PAYMENTS and rule["remaining"] == 0


def _all_definite(stack: PayStack, egms: set[str]) -> list[dict[str, Any]] | None:
    payments = _ours(stack, egms)
    return payments if all(p["status"] in DEFINITE for p in payments) else None


def _held_requests_finished(stack: PayStack, mark: int) -> bool:
    held = [entry for entry in stack.cms_journal_since(mark, FUNDINGS)
            if entry["method"] == "POST" and entry["fault"]]
    return len(held) == PAYMENTS


def test_kill_9_during_funding_then_restart_finishes_every_payment_exactly_once(
    stack: PayStack,
) -> None:
    egm_list = [stack.add_egm("CRASH") for _ in range(PAYMENTS)]
    egms, codes = set(egm_list), [stack.acquire_qr(egm) for egm in egm_list]
    ledger_before, mark = stack.ledger(), stack.cms_journal_mark()
    stack.fault(method="POST", path=FUNDINGS, action="delay", delayMs=HOLD_MS, times=PAYMENTS)
    barrier, lock = threading.Barrier(PAYMENTS, timeout=60), threading.Lock()
    outcomes: list[str] = []
    phones = [threading.Thread(target=_phone, args=(stack, code, barrier, outcomes, lock))
              for code in codes]
    for phone in phones:
        phone.start()

    _wait_until("20 payments in FUNDING, their requests held by the CMS",
                lambda: _all_funding_and_sent(stack, egms), KILL_WITHIN_S, stack)
    stack.trustly.kill()
    for phone in phones:
        phone.join(timeout=60)
    assert len(outcomes) == PAYMENTS and not any(o.startswith("HTTP") for o in outcomes), outcomes
    stack.trustly.start()  # same port, same database: the start-up sweep runs first

    final = _wait_until("every payment definite after the restart",
                        lambda: _all_definite(stack, egms), 60, stack)
    _wait_until("the held requests finished on the CMS",
                lambda: _held_requests_finished(stack, mark), 60, stack)

    assert len(final) == PAYMENTS
    assert {p["status"] for p in final} == {"CREDITED"}, [(p["status"], p.get("reason"))
                                                         for p in final]
    assert len({p["transactionId"] for p in final}) == PAYMENTS
    for payment in final:
        events = [e["kind"] for e in stack.payment_record(payment["paymentId"])["events"]]
        assert "RECOVERY_LEASE" in events, events  # the sweep, not the dead request, did it
        decided = stack.fundings_of(payment["transactionId"])
        assert [(f["outcome"], f["amount"], f["egmId"]) for f in decided] \
            == [("APPLIED", AMOUNT, payment["egmId"])]
    assert {egm: stack.meter(egm) for egm in egm_list} == dict.fromkeys(egm_list, AMOUNT)
    ledger = stack.ledger()
    assert ledger["transactions"] - ledger_before["transactions"] == PAYMENTS
    assert ledger["appliedTotal"] - ledger_before["appliedTotal"] == PAYMENTS * AMOUNT
    stack.assert_reconciled()
