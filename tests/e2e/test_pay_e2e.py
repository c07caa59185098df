"""The Pay end to end with both sims as real servers (gunicorn, 2 workers each, 127.0.0.1).

The CMS acquires a QR for an EGM from Trustly, the phone pays it through the microsite's JSON
API, TPAS calls the CMS over HTTP. Every test checks what a player, the casino and an
auditor would see: the payment's status, the EGM's meter, the UBAI's limit usage, the CMS's
decided fundings, the ledger's balance, and an empty reconciliation.

One pair of servers serves the whole module (starting them costs seconds); each test uses
EGMs and bank usernames of its own, so the tests never see each other's money.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import DatabaseFactory
from tests.e2e.pay_stack import PayStack, serve_pay_stack, unique

pytestmark = [pytest.mark.db, pytest.mark.slow]

PHONES = 32


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PayStack]:
    """sim_cms and sim_trustly, wired to each other, on controllable clocks."""
    databases = DatabaseFactory(tmp_path_factory.mktemp("pay-e2e-dbs"))
    try:
        with serve_pay_stack(tmp_path_factory.mktemp("pay-e2e"), databases,
                             trustly_toml="[trustly]\njournal = false\n") as running:
            yield running
    finally:
        databases.drop_all()


def assert_nothing_credited(stack: PayStack, payment: dict[str, Any], egm_id: str) -> None:
    """The payment moved no money: no applied funding, meter 0, books still agree."""
    applied = [f for f in stack.fundings_of(payment["transactionId"]) if f["outcome"] == "APPLIED"]
    assert applied == [], applied
    assert stack.meter(egm_id) == 0
    stack.assert_reconciled()


def kinds(stack: PayStack, payment: dict[str, Any]) -> list[str]:
    """The kinds of a payment's events, oldest first."""
    return [event["kind"] for event in stack.payment_record(payment["paymentId"])["events"]]


# --- the happy path and the QR's single use -------------------------------------------------


def test_a_scanned_qr_paid_from_the_phone_credits_the_egm_and_the_limit_once(
    stack: PayStack,
) -> None:
    egm, user = stack.add_egm(), unique("player")
    code = stack.acquire_qr(egm)
    page = httpx.get(f"{stack.trustly.base}/scan/{code}", timeout=30)
    assert page.status_code == 200 and egm in page.text
    ledger_before = stack.ledger()

    response = stack.pay_response(code, 2500, username=user)

    assert response.status_code == 201, response.text
    payment = response.json()
    assert (payment["status"], payment["egmId"], payment["amount"], payment["creditMeter"]) \
        == ("CREDITED", egm, 2500, 2500)
    assert stack.payment(payment["paymentId"]) == payment
    assert stack.meter(egm) == 2500
    ubai = stack.payment_record(payment["paymentId"])["ubai"]
    limit = stack.limit(ubai)
    assert limit["usedToday"] == 2500
    assert limit["remainingToday"] == limit["dailyLimit"] - 2500
    (funding,) = stack.fundings_of(payment["transactionId"])
    assert (funding["outcome"], funding["amount"], funding["egmId"], funding["ubai"]) \
        == ("APPLIED", 2500, egm, ubai)
    ledger = stack.ledger()
    assert ledger["transactions"] - ledger_before["transactions"] == 1
    assert ledger["appliedTotal"] - ledger_before["appliedTotal"] == 2500
    stack.assert_reconciled()


def test_the_same_bank_account_uses_its_limit_again_on_the_next_payment(
    stack: PayStack,
) -> None:
    egm, user = stack.add_egm(), unique("player")
    first = stack.pay(stack.acquire_qr(egm), 1000, username=user)
    ubai = stack.payment_record(first["paymentId"])["ubai"]
    used = stack.limit(ubai)["usedToday"]
    second = stack.pay(stack.acquire_qr(egm), 1500, username=user.upper())
    assert first["status"] == second["status"] == "CREDITED"
    assert stack.payment_record(second["paymentId"])["ubai"] == ubai
    assert stack.limit(ubai)["usedToday"] == used + 1500
    assert stack.meter(egm) == 2500
    stack.assert_reconciled()


def test_a_replayed_qr_is_refused_with_409_and_credits_once(stack: PayStack) -> None:
    egm = stack.add_egm()
    code = stack.acquire_qr(egm)
    first = stack.pay(code)
    replay = stack.pay_response(code, username=unique("other"))
    assert first["status"] == "CREDITED"
    assert replay.status_code == 409, replay.text
    assert stack.meter(egm) == 2000
    assert [p["paymentId"] for p in stack.payments() if p["egmId"] == egm] \
        == [first["paymentId"]]
    stack.assert_reconciled()


def _phone(stack: PayStack, code: str, barrier: threading.Barrier,
           answers: list[httpx.Response], lock: threading.Lock) -> None:
    with stack.phone_client() as client:
        barrier.wait()
        answer = stack.pay_response(code, username=unique("phone"), client=client)
    with lock:
        answers.append(answer)


def test_32_phones_paying_one_qr_at_once_credit_it_exactly_once(stack: PayStack) -> None:
    egm = stack.add_egm()
    code = stack.acquire_qr(egm)
    barrier, lock = threading.Barrier(PHONES, timeout=60), threading.Lock()
    answers: list[httpx.Response] = []
    phones = [threading.Thread(target=_phone, args=(stack, code, barrier, answers, lock))
              for _ in range(PHONES)]
    for phone in phones:
        phone.start()
    for phone in phones:
        phone.join(timeout=120)

    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {201: 1, 409: PHONES - 1}, (statuses, stack.logs())
    (winner,) = [answer.json() for answer in answers if answer.status_code == 201]
    assert winner["status"] == "CREDITED"
    assert stack.meter(egm) == 2000
    assert len(stack.fundings_of(winner["transactionId"])) == 1
    assert [p["paymentId"] for p in stack.payments() if p["egmId"] == egm] \
        == [winner["paymentId"]]
    stack.assert_reconciled()


def test_an_expired_qr_is_refused_with_410_and_nothing_moves(stack: PayStack) -> None:
    egm = stack.add_egm()
    code = stack.acquire_qr(egm)
    stack.advance(400)  # both systems' clocks: past the QR's 300 s lifetime on each
    ledger_before = stack.ledger()

    response = stack.pay_response(code)

    assert response.status_code == 410, response.text
    assert [p for p in stack.payments() if p["qrCode"] == code] == []
    assert stack.meter(egm) == 0
    assert stack.ledger() == ledger_before
    stack.assert_reconciled()


# --- the demo bank ----------------------------------------------------------------------------


@pytest.mark.parametrize(("password", "reason"), [
    ("NotEnoughFunds", "BANK_NOT_ENOUGH_FUNDS"),
    ("LoginError", "BANK_LOGIN_ERROR"),
    ("AccountLocked", "BANK_ACCOUNT_LOCKED"),
    ("Unavailable", "BANK_UNAVAILABLE"),
    ("TimeoutError", "BANK_TIMEOUT"),
])
def test_each_bank_keyphrase_fails_the_payment_before_the_cms_hears_of_it(
    stack: PayStack, password: str, reason: str,
) -> None:
    egm = stack.add_egm()
    response = stack.pay_response(stack.acquire_qr(egm), password=password)
    assert response.status_code == 201, response.text
    payment = response.json()
    assert (payment["status"], payment["reason"]) == ("FAILED_VOIDED", reason)
    assert kinds(stack, payment) == ["CREATED", "BANK_REFUSED"]
    assert stack.fundings_of(payment["transactionId"]) == []
    assert_nothing_credited(stack, payment, egm)


def test_the_sleep_user_pays_and_moves_neither_clock(
    stack: PayStack,
) -> None:
    egm = stack.add_egm()
    code = stack.acquire_qr(egm)
    before = {sim: stack.clock(sim) for sim in ("trustly", "cms")}
    payment = stack.pay(code, username="Sleep", password="7")
    assert payment["status"] == "CREDITED"
    assert {sim: stack.clock(sim) for sim in ("trustly", "cms")} == before  # nothing moved
    assert stack.meter(egm) == 2000
    stack.assert_reconciled()


def test_the_sleep_user_with_a_password_that_is_no_number_of_seconds_fails(
    stack: PayStack,
) -> None:
    egm = stack.add_egm()
    payment = stack.pay(stack.acquire_qr(egm), username="Sleep", password="a while")
    assert (payment["status"], payment["reason"]) == ("FAILED_VOIDED", "BANK_LOGIN_ERROR")
    assert_nothing_credited(stack, payment, egm)


# --- the CMS's rejections ---------------------------------------------------------------------

# (stack, EGM id) -> the code the phone pays, and the bank username to pay with (None: any).
Arrange = Callable[[PayStack, str], tuple[str, str | None]]


def _in_state(state: str) -> Arrange:
    def arrange(stack: PayStack, egm: str) -> tuple[str, str | None]:
        code = stack.acquire_qr(egm)
        stack.change_egm(egm, state=state)
        return code, None
    return arrange


def _meter_cap_below_the_amount(stack: PayStack, egm: str) -> tuple[str, str | None]:
    stack.change_egm(egm, creditLimit=1000)
    return stack.acquire_qr(egm), None


def _daily_limit_below_the_amount(stack: PayStack, egm: str) -> tuple[str, str | None]:
    """The player paid 1000 elsewhere today; then the limit of that account is set to 1500."""
    user = unique("player")
    elsewhere = stack.pay(stack.acquire_qr(stack.add_egm()), 1000, username=user)
    ubai = stack.payment_record(elsewhere["paymentId"])["ubai"]
    stack.set_limit(ubai, 1500)
    return stack.acquire_qr(egm), user


def _never_displayed(stack: PayStack, egm: str) -> tuple[str, str | None]:
    return stack.issue_qr(egm), None


def _unknown_egm(stack: PayStack, egm: str) -> tuple[str, str | None]:
    return stack.issue_qr(unique("NO-SUCH-EGM")), None


REJECTIONS: dict[str, Arrange] = {
    "EGM_OFFLINE": _in_state("OFFLINE"),
    "EGM_BUSY": _in_state("IN_GAME"),
    "EGM_DOOR_OPEN": _in_state("DOOR_OPEN"),
    "EGM_TILT": _in_state("TILT"),
    "DAILY_LIMIT_EXCEEDED": _daily_limit_below_the_amount,
    "CREDIT_LIMIT_EXCEEDED": _meter_cap_below_the_amount,
    "QR_TOKEN_MISMATCH": _never_displayed,
    "EGM_NOT_FOUND": _unknown_egm,
}


@pytest.mark.parametrize("code", list(REJECTIONS))
def test_each_cms_rejection_ends_the_payment_rejected_and_voided(
    stack: PayStack, code: str,
) -> None:
    egm = stack.add_egm()
    qr, username = REJECTIONS[code](stack, egm)

    payment = stack.pay(qr, 2000, username=username)

    assert (payment["status"], payment["reason"]) == ("REJECTED_VOIDED", code), payment
    assert "BANK_VOIDED" in kinds(stack, payment)  # the player's bank payment is undone
    decided = stack.fundings_of(payment["transactionId"])
    if code == "DAILY_LIMIT_EXCEEDED":  # TPAS read the limit first and never sent it
        assert decided == [] and "FUNDING_SENT" not in kinds(stack, payment)
    else:
        assert [(f["outcome"], f["code"]) for f in decided] == [("REJECTED", code)]
    assert_nothing_credited(stack, payment, egm)
