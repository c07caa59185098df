"""The Pay through a misbehaving CMS, both sims as real servers on 127.0.0.1.

Faults are declared on the running CMS through its control API (`POST /_sim/faults`), so
TPAS meets them over a real socket: a funding applied and then the connection cut, two 503s
before a success, a CMS slower than TPAS's read timeout, an access token the CMS expires
while TPAS still holds it. Each payment must end with exactly one credit (or none), and
TPAS's reconciliation against the CMS must come out empty.

TPAS's default CMS profile gets a short read timeout from its config file
(`[trustly.cms] read_timeout_s`), so a delay fault of a few seconds outlasts it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from simkit.wait import poll_until
from tests.conftest import DatabaseFactory
from tests.e2e.pay_stack import POLL_S, PayStack, serve_pay_stack, unique

pytestmark = [pytest.mark.db, pytest.mark.slow]

READ_TIMEOUT_S = 1.0
SLOW_CMS_MS = 2500  # longer than READ_TIMEOUT_S: TPAS gives up waiting, the CMS goes on
CMS_TOKEN_TTL_S = 300  # sim_cms's default access_token_ttl_s
TRUSTLY_TOML = f"[trustly]\njournal = false\n[trustly.cms]\nread_timeout_s = {READ_TIMEOUT_S}\n"
FUNDINGS = "/cws/v1/fundings"
MAX_PAYMENTS_TO_SEE_A_401 = 10
TPAS_AGENT = "scanpay-sim-tpas/"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PayStack]:
    """sim_cms and sim_trustly, wired to each other, TPAS with a short CMS read timeout."""
    databases = DatabaseFactory(tmp_path_factory.mktemp("pay-faults-dbs"))
    try:
        with serve_pay_stack(tmp_path_factory.mktemp("pay-faults"), databases,
                             trustly_toml=TRUSTLY_TOML) as running:
            yield running
    finally:
        databases.drop_all()


@pytest.fixture(autouse=True)
def no_fault_outlives_its_test(stack: PayStack) -> Iterator[None]:
    """Every test starts and ends with a CMS that answers normally."""
    yield
    stack.clear_faults()


def kinds(stack: PayStack, payment: dict[str, Any]) -> list[str]:
    """The kinds of a payment's events, oldest first."""
    return [event["kind"] for event in stack.payment_record(payment["paymentId"])["events"]]


def assert_credited_once(stack: PayStack, payment: dict[str, Any], egm: str,
                         ledger_before: dict[str, Any], amount: int = 2000) -> None:
    """One applied funding under the payment's transactionId, one ledger transaction, and
    the books agree."""
    assert payment["status"] == "CREDITED", (payment, stack.payment_record(payment["paymentId"]))
    assert stack.meter(egm) == amount
    assert [f["outcome"] for f in stack.fundings_of(payment["transactionId"])] == ["APPLIED"]
    ledger = stack.ledger()
    assert ledger["transactions"] - ledger_before["transactions"] == 1
    assert ledger["appliedTotal"] - ledger_before["appliedTotal"] == amount
    stack.assert_reconciled()


def funding_posts(stack: PayStack, mark: int) -> list[dict[str, Any]]:
    """The CMS's journal of `POST /cws/v1/fundings` since `mark`."""
    return [entry for entry in stack.cms_journal_since(mark, FUNDINGS)
            if entry["method"] == "POST" and entry["path"] == FUNDINGS]


def wait_for_faulted_posts(stack: PayStack, mark: int, count: int,
                           deadline_s: float = 30.0) -> list[dict[str, Any]]:
    """Wait, bounded, until `count` faulted funding requests have finished on the CMS (a
    delayed one finishes on the CMS's own time, after TPAS stopped waiting for it)."""
    def finished() -> list[dict[str, Any]] | None:
        faulted = [entry for entry in funding_posts(stack, mark) if entry["fault"]]
        return faulted if len(faulted) >= count else None

    found = poll_until(finished, timeout_s=deadline_s, interval_s=POLL_S)
    if found is None:
        raise AssertionError(f"fewer than {count} faulted fundings finished within {deadline_s}s")
    return found


def test_a_funding_applied_then_dropped_is_credited_once(stack: PayStack) -> None:
    egm, ledger_before = stack.add_egm(), stack.ledger()
    code = stack.acquire_qr(egm)
    stack.fault(method="POST", path=FUNDINGS, action="apply_then_drop", times=1)

    payment = stack.pay(code)

    assert_credited_once(stack, payment, egm, ledger_before)
    events = kinds(stack, payment)
    assert "FUNDING_UNKNOWN" in events and "INQUIRY" in events  # it asked, it did not guess


def test_two_503s_then_a_201_credit_once(stack: PayStack) -> None:
    egm, ledger_before = stack.add_egm(), stack.ledger()
    code = stack.acquire_qr(egm)
    mark = stack.cms_journal_mark()
    stack.fault(method="POST", path=FUNDINGS, action="status", status=503, times=2)

    payment = stack.pay(code)

    assert_credited_once(stack, payment, egm, ledger_before)
    statuses = Counter(entry["status"] for entry in funding_posts(stack, mark))
    assert statuses[503] == 2 and statuses[201] >= 1, statuses
    assert kinds(stack, payment).count("FUNDING_SENT") >= 3


def test_a_cms_slower_than_the_read_timeout_credits_once(stack: PayStack) -> None:
    egm, ledger_before = stack.add_egm(), stack.ledger()
    code = stack.acquire_qr(egm)
    mark = stack.cms_journal_mark()
    stack.fault(method="POST", path=FUNDINGS, action="delay", delayMs=SLOW_CMS_MS, times=1)

    payment = stack.pay(code)
    (slow,) = wait_for_faulted_posts(stack, mark, 1)

    assert slow["latencyMs"] >= SLOW_CMS_MS
    assert "FUNDING_UNKNOWN" in kinds(stack, payment)  # TPAS stopped waiting and asked
    assert_credited_once(stack, payment, egm, ledger_before)  # the late one was a replay


def _from_tpas(stack: PayStack, mark: int, path: str) -> list[dict[str, Any]]:
    """CMS journal entries since `mark` of requests TPAS made (not the test's own)."""
    return [entry for entry in stack.cms_journal_since(mark, path)
            if entry["requestHeaders"].get("User-Agent", "").startswith(TPAS_AGENT)]


def _expired_token_refusals(stack: PayStack, mark: int) -> list[dict[str, Any]]:
    return [entry for entry in _from_tpas(stack, mark, "/cws/v1/")
            if entry["status"] == 401 and "TOKEN_EXPIRED" in entry["responseBody"]]


def test_an_access_token_the_cms_expired_mid_run_is_refreshed(stack: PayStack) -> None:
    egm, ledger_before = stack.add_egm(), stack.ledger()
    phone = stack.phone_client()  # one keep-alive connection: the same TPAS worker, likely
    try:
        first = stack.pay(stack.acquire_qr(egm), client=phone)
        stack.advance(CMS_TOKEN_TTL_S + 1, trustly=False)  # TPAS's clock: token still good
        mark = stack.cms_journal_mark()
        later: list[dict[str, Any]] = []
        # Each TPAS worker holds its own token; pay until one of them meets the expiry.
        while len(later) < MAX_PAYMENTS_TO_SEE_A_401 and not _expired_token_refusals(stack,
                                                                                     mark):
            later.append(stack.pay(stack.acquire_qr(egm), username=unique("p"), client=phone))
    finally:
        phone.close()

    assert [p["status"] for p in [first, *later]] == ["CREDITED"] * (1 + len(later))
    refusals = _expired_token_refusals(stack, mark)
    assert refusals, "no TPAS request met the expired token"
    fetched = [entry for entry in _from_tpas(stack, mark, "/cws/v1/oauth/token")
               if entry["status"] == 200]
    assert fetched and fetched[0]["id"] > refusals[0]["id"]  # refused, then a new token
    amount = 2000 * (1 + len(later))
    assert stack.meter(egm) == amount
    ledger = stack.ledger()
    assert ledger["appliedTotal"] - ledger_before["appliedTotal"] == amount
    stack.assert_reconciled()
