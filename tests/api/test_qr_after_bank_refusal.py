"""A QR code whose payment the bank refused: the EGM still shows it, so it can be paid again.

Nothing of a refused payment reaches the CMS, which therefore never replaces the code on the
EGM. By default (`tpas_release_qr_on_bank_refusal`) the refusal hands the code's claim back
and the same code pays once more, and still credits at most once however many phones use it
at the same moment; with the setting off the code stays used (409), as it always did.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy.exc import IntegrityError

from sim_trustly.microsite import demo_bank
from sim_trustly.microsite.demo_bank import BankResult
from sim_trustly.tpas import payments
from sim_trustly.tpas.payments import PaymentRecord
from simkit.clock import Clock
from simkit.money import MinorUnits
from tests.api.tpas_support import ADMIN, Casino, CasinoFactory, make_casino, unique_user

pytestmark = pytest.mark.db
__all__ = ["make_casino"]  # the fixture, used by name

REFUSING = "NotEnoughFunds"


def body(password: str = "pw", amount: int = 2000) -> dict[str, Any]:
    return {"amount": amount, "currency": "USD",
            "bank": {"username": unique_user(), "password": password}}


def pay(casino: Casino, code: str, password: str = "pw") -> Any:
    """`POST /api/v1/scan/<code>/payments`, as the phone's approve button does."""
    return casino.trustly.post(f"/api/v1/scan/{code}/payments", json=body(password))


def scan(casino: Casino, code: str) -> dict[str, Any]:
    response = casino.trustly.get(f"/api/v1/scan/{code}")
    assert response.status_code == 200, response.get_data(as_text=True)
    found: dict[str, Any] = response.get_json()
    return found


def applied(casino: Casino) -> list[str]:
    return [f["transactionId"] for f in casino.cms_fundings() if f["outcome"] == "APPLIED"]


# --- over the JSON API --------------------------------------------------------------------


def test_a_refused_code_can_be_paid_again_and_credits_once(make_casino: CasinoFactory) -> None:
    casino = make_casino()
    code = casino.show_qr()
    refused = pay(casino, code, REFUSING)
    assert refused.status_code == 201
    assert (refused.get_json()["status"], refused.get_json()["reason"]) == (
        "FAILED_VOIDED", "BANK_NOT_ENOUGH_FUNDS")
    assert scan(casino, code)["state"] == "ACTIVE"  # the code on the EGM is payable again

    paid = pay(casino, code)
    assert paid.status_code == 201
    assert paid.get_json()["status"] == "CREDITED"
    assert pay(casino, code).status_code == 409  # and now it is spent
    assert casino.meter() == 2000
    assert applied(casino) == [paid.get_json()["transactionId"]]
    assert casino.reconciliation()["reconciled"]

    # the refusal is still on record, as it ended
    again = casino.trustly.get(f"/api/v1/payments/{refused.get_json()['paymentId']}").get_json()
    assert (again["status"], again["reason"]) == ("FAILED_VOIDED", "BANK_NOT_ENOUGH_FUNDS")
    detail = casino.trustly.get(f"/_sim/payments/{again['paymentId']}", headers=ADMIN).get_json()
    assert [e["detail"] for e in detail["events"] if e["kind"] == "BANK_REFUSED"] == [
        {"reason": "BANK_NOT_ENOUGH_FUNDS", "qrReleased": True}]
    used = scan(casino, code)
    assert (used["state"], used["payment"]["status"]) == ("USED", "CREDITED")


def test_a_code_refused_again_and_again_stays_payable_until_it_expires(
    make_casino: CasinoFactory,
) -> None:
    casino = make_casino()
    code = casino.show_qr()
    for password in ("LoginError", "AccountLocked", "Unavailable"):
        assert pay(casino, code, password).get_json()["status"] == "FAILED_VOIDED"
    casino.clock.advance(3600)
    assert pay(casino, code).status_code == 410  # expiry still applies to a released code
    assert casino.meter() == 0
    assert applied(casino) == []


def test_with_the_setting_off_a_refused_code_stays_used(make_casino: CasinoFactory) -> None:
    casino = make_casino(tpas_release_qr_on_bank_refusal=False)
    code = casino.show_qr()
    refused = pay(casino, code, REFUSING).get_json()
    assert refused["status"] == "FAILED_VOIDED"
    again = pay(casino, code)
    assert again.status_code == 409
    assert again.get_json()["errors"][0]["reason"] == "QR_CODE_USED"
    shown = scan(casino, code)
    assert (shown["state"], shown["payment"]["paymentId"]) == ("USED", refused["paymentId"])
    assert casino.meter() == 0


# --- phones at the same moment --------------------------------------------------------------


def test_a_phone_paying_while_the_refused_payment_is_at_the_bank_is_told_used(
    make_casino: CasinoFactory, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the refused payment holds the claim (its player is at the bank), another phone
    gets 409; once the bank refuses, the next phone pays; no later phone pays again."""
    casino = make_casino()
    code = casino.show_qr()
    at_bank, answer = threading.Event(), threading.Event()
    real = demo_bank.authorize

    def slow_refusal(username: str, password: str, amount: MinorUnits, clock: Clock) -> BankResult:
        if password == REFUSING:
            at_bank.set()
            assert answer.wait(10)
        return real(username, password, amount, clock)

    monkeypatch.setattr(demo_bank, "authorize", slow_refusal)
    outcome: dict[str, Any] = {}
    first = threading.Thread(target=lambda: outcome.update(first=pay(casino, code, REFUSING)))
    first.start()
    assert at_bank.wait(10)
    assert pay(casino, code).status_code == 409
    answer.set()
    first.join(10)
    assert outcome["first"].get_json()["status"] == "FAILED_VOIDED"
    paid = pay(casino, code)
    assert paid.get_json()["status"] == "CREDITED"
    assert [pay(casino, code).status_code for _ in range(2)] == [409, 409]
    assert casino.meter() == 2000
    assert applied(casino) == [paid.get_json()["transactionId"]]


@pytest.mark.parametrize("round_", range(3))
def test_phones_refused_and_approved_at_once_credit_one_code_at_most_once(
    make_casino: CasinoFactory, round_: int,
) -> None:
    casino = make_casino()
    code = casino.show_qr()
    passwords = [REFUSING, "pw", "LoginError", "pw", REFUSING, "pw"]
    barrier = threading.Barrier(len(passwords))
    answers: list[Any] = [None] * len(passwords)

    def phone(n: int) -> None:
        barrier.wait()
        answers[n] = pay(casino, code, passwords[n])

    threads = [threading.Thread(target=phone, args=(n,)) for n in range(len(passwords))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    outcomes = Counter(a.get_json().get("status", a.status_code) if a.status_code < 300
                       else a.status_code for a in answers)
    assert set(outcomes) <= {"CREDITED", "FAILED_VOIDED", 409}, outcomes
    credited = [a.get_json()["transactionId"] for a in answers
                if a.status_code < 300 and a.get_json()["status"] == "CREDITED"]
    assert len(credited) <= 1, outcomes
    assert casino.meter() == 2000 * len(credited)
    assert applied(casino) == credited
    holders = [p for p in payments.list_payments(casino.ctx.db)
               if p.qr_code == code and p.claim_released_at is None]
    assert len(holders) <= 1
    assert casino.reconciliation()["reconciled"]


def test_the_database_refuses_a_second_payment_holding_one_code(make_casino: CasinoFactory) -> None:
    """The last guard under the claim: two payments that both hold one code cannot be stored,
    whatever the code above the database does; a released one leaves room for one more."""
    casino = make_casino()
    code = casino.show_qr()
    paid = pay(casino, code).get_json()
    record = payments.get(casino.ctx.db, paid["paymentId"])
    assert record is not None

    def twin(suffix: str, **changes: Any) -> PaymentRecord:
        values = {**record.values(), "id": record.id[:-1] + suffix,
                  "transaction_id": record.transaction_id + suffix, **changes}
        return PaymentRecord(**values)

    with pytest.raises(IntegrityError), casino.ctx.db.core_write() as connection:
        payments.create(connection, twin("x", status="CREATED", claim_released_at=None), [])
    with casino.ctx.db.core_write() as connection:  # a released claim is only a record
        payments.create(connection, twin("y", status="FAILED_VOIDED",
                                         claim_released_at=record.created_at), [])
    assert casino.meter() == 2000


# --- the microsite pages ------------------------------------------------------------------


def pay_on_pages(casino: Casino, code: str, password: str) -> Any:
    """Amount, confirmation, bank login: the receipt page the browser is sent to."""
    page = casino.trustly.post(f"/scan/{code}/confirm", data={"amount": "2000"})
    assert page.status_code == 200, page.get_data(as_text=True)
    amount = re.search(r'name="amount" value="([^"]*)"', page.get_data(as_text=True))
    assert amount is not None
    paid = casino.trustly.post(f"/scan/{code}", data={
        "amount": amount.group(1), "username": unique_user(), "password": password})
    assert paid.status_code == 303, paid.get_data(as_text=True)
    return casino.trustly.get(paid.headers["Location"])


def text_of(response: Any) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)).split())


def test_the_receipt_of_a_refusal_lets_the_player_try_the_same_code_again(
    make_casino: CasinoFactory,
) -> None:
    casino = make_casino()
    code = casino.show_qr()
    receipt = pay_on_pages(casino, code, REFUSING)
    text = text_of(receipt)
    assert "did not go through" in text and "does not have enough money" in text
    assert "can still be used" in text
    retry = re.search(r'href="([^"]+)" data-action="retry"', receipt.get_data(as_text=True))
    assert retry is not None and retry.group(1) == f"/scan/{code}"

    form = casino.trustly.get(retry.group(1))
    assert form.status_code == 200  # the amount page again, not "already used"
    assert "Credited $20.00 to EGM-001" in text_of(pay_on_pages(casino, code, "pw"))
    assert casino.trustly.get(f"/scan/{code}").status_code == 409
    assert casino.meter() == 2000
    # the refusal's receipt no longer offers a code that has paid since
    again = casino.trustly.get(urlsplit(receipt.request.url).path)
    assert "did not go through" in text_of(again)
    assert 'data-action="retry"' not in again.get_data(as_text=True)


def test_with_the_setting_off_the_receipt_offers_no_retry(make_casino: CasinoFactory) -> None:
    casino = make_casino(tpas_release_qr_on_bank_refusal=False)
    code = casino.show_qr()
    receipt = pay_on_pages(casino, code, REFUSING)
    assert "did not go through" in text_of(receipt)
    assert 'data-action="retry"' not in receipt.get_data(as_text=True)
    assert casino.trustly.get(f"/scan/{code}").status_code == 409
