"""The microsite's JSON twin: describe a scan, pay with it, read the payment again.

Both sims run in-process and talk to each other; every refusal is checked to change nothing
(the meter stays, the code stays payable).
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from simkit.clock import ManualClock
from tests.api.scan_helpers import EGM, Floor

pytestmark = pytest.mark.db

PAYMENT_FIELDS = {"paymentId", "status", "transactionId", "egmId", "amount", "currency"}


@pytest.fixture
def floor(pay_pair: tuple[Flask, Flask]) -> Floor:
    return Floor(*pay_pair)


def body(amount: Any = 2000, username: str = "alice", password: str = "pw",
         **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"amount": amount, "currency": "USD",
                               "bank": {"username": username, "password": password}}
    payload.update(changes)
    return payload


def pay(floor: Floor, code: str, payload: Any = None) -> Any:
    return floor.trustly.post(f"/api/v1/scan/{code}/payments",
                              json=body() if payload is None else payload)


def reason_of(response: Any) -> str:
    error = response.get_json()["errors"][0]
    assert isinstance(error["code"], int)
    return str(error["reason"])


def test_describe_scan_shows_what_the_form_needs(floor: Floor) -> None:
    code = floor.show_qr()
    response = floor.trustly.get(f"/api/v1/scan/{code}")
    assert response.status_code == 200
    scan = response.get_json()
    assert scan["state"] == "ACTIVE"
    assert scan["egmId"] == EGM
    assert scan["casino"] == "Demo Casino"
    assert scan["currency"] == "USD"
    amounts = scan["suggestedAmounts"]
    assert amounts and all(isinstance(a, int) and a > 0 for a in amounts)
    assert scan["expiresAt"].endswith("Z")
    assert response.headers["Cache-Control"] == "no-store"


def test_describe_unknown_scan_is_404(floor: Floor) -> None:
    response = floor.trustly.get("/api/v1/scan/not-a-code")
    assert response.status_code == 404
    assert reason_of(response) == "QR_CODE_UNKNOWN"


def test_payment_credits_the_egm_and_answers_201(floor: Floor) -> None:
    code = floor.show_qr()
    response = pay(floor, code)
    assert response.status_code == 201, response.get_data(as_text=True)
    payment = response.get_json()
    assert set(payment) >= PAYMENT_FIELDS
    assert (payment["status"], payment["egmId"], payment["amount"], payment["currency"]) == \
        ("CREDITED", EGM, 2000, "USD")
    assert "reason" not in payment
    assert response.headers["Location"] == f"/api/v1/payments/{payment['paymentId']}"
    assert floor.meter() == 2000


def test_payment_reads_again_by_id(floor: Floor) -> None:
    payment = pay(floor, floor.show_qr()).get_json()
    response = floor.trustly.get(f"/api/v1/payments/{payment['paymentId']}")
    assert response.status_code == 200
    assert response.get_json() == payment


def test_described_scan_after_payment_is_used_with_its_payment(floor: Floor) -> None:
    code = floor.show_qr()
    payment = pay(floor, code).get_json()
    scan = floor.trustly.get(f"/api/v1/scan/{code}").get_json()
    assert scan["state"] == "USED"
    assert scan["payment"]["paymentId"] == payment["paymentId"]


def test_unknown_payment_is_404(floor: Floor) -> None:
    response = floor.trustly.get("/api/v1/payments/pay-nope")
    assert response.status_code == 404
    assert reason_of(response) == "PAYMENT_NOT_FOUND"


def test_replayed_qr_is_rejected_after_credit(floor: Floor) -> None:
    code = floor.show_qr()
    assert pay(floor, code).status_code == 201
    again = pay(floor, code, body(amount=5000, username="bob"))
    assert again.status_code == 409
    assert reason_of(again) == "QR_CODE_USED"
    assert floor.meter() == 2000


def test_expired_qr_is_410_and_credits_nothing(floor: Floor, clock: ManualClock) -> None:
    code = floor.show_qr()
    clock.advance(301)
    response = pay(floor, code)
    assert response.status_code == 410
    assert reason_of(response) == "QR_CODE_EXPIRED"
    assert floor.meter() == 0
    assert floor.trustly.get(f"/api/v1/scan/{code}").get_json()["state"] == "EXPIRED"


def test_unknown_qr_is_404(floor: Floor) -> None:
    response = pay(floor, "AAAAAAAAAAAAAAAAAAAAAA")
    assert response.status_code == 404
    assert reason_of(response) == "QR_CODE_UNKNOWN"


def test_qr_of_a_merchant_trustly_no_longer_knows_is_403(floor: Floor) -> None:
    code = floor.show_qr()
    floor.forget_merchant()
    response = pay(floor, code)
    assert response.status_code == 403
    assert reason_of(response) == "QR_CODE_WRONG_MERCHANT"
    assert floor.meter() == 0


MALFORMED = {
    "float-amount": body(amount=20.0), "zero-amount": body(amount=0),
    "negative-amount": body(amount=-5), "decimal-string-amount": body(amount="20.00"),
    "boolean-amount": body(amount=True), "no-amount": {"currency": "USD", "bank": {
        "username": "alice", "password": "pw"}},
    "lower-case-currency": body(currency="usd"), "null-currency": body(currency=None),
    "no-bank": body(bank=None), "bank-without-password": body(bank={"username": "a"}),
    "empty-username": body(username=""), "array": [1, 2], "string": "text", "number": 7,
}


@pytest.mark.parametrize("payload", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_payment_is_400_and_changes_nothing(floor: Floor, payload: Any) -> None:
    code = floor.show_qr()
    response = floor.trustly.post(f"/api/v1/scan/{code}/payments", json=payload)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["errors"][0]["code"] == 200
    assert floor.trustly.get(f"/api/v1/scan/{code}").get_json()["state"] == "ACTIVE"
    assert pay(floor, code).status_code == 201  # the code was not spent by the refusal


def test_payment_that_is_not_json_is_415(floor: Floor) -> None:
    code = floor.show_qr()
    response = floor.trustly.post(f"/api/v1/scan/{code}/payments", data="amount=2000",
                                  content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert reason_of(response) == "UNSUPPORTED_MEDIA_TYPE"
    assert floor.meter() == 0


def test_payment_body_over_16_kib_is_413(floor: Floor) -> None:
    code = floor.show_qr()
    response = pay(floor, code, body(padding="x" * 17_000))
    assert response.status_code == 413
    assert floor.meter() == 0


def test_invalid_json_is_400(floor: Floor) -> None:
    code = floor.show_qr()
    response = floor.trustly.post(f"/api/v1/scan/{code}/payments", data="{nope",
                                  content_type="application/json")
    assert response.status_code == 400
    assert floor.meter() == 0


def test_cms_rejection_ends_rejected_voided_with_its_reason(floor: Floor) -> None:
    floor.set_daily_limit("alice", 1000)
    response = pay(floor, floor.show_qr())
    assert response.status_code == 201
    payment = response.get_json()
    assert (payment["status"], payment["reason"]) == ("REJECTED_VOIDED", "DAILY_LIMIT_EXCEEDED")
    assert floor.meter() == 0


def test_egm_in_game_ends_rejected_voided(floor: Floor) -> None:
    code = floor.show_qr()
    floor.set_egm_state("IN_GAME")
    payment = pay(floor, code).get_json()
    assert (payment["status"], payment["reason"]) == ("REJECTED_VOIDED", "EGM_BUSY")
    assert floor.meter() == 0


def test_bank_keyphrase_ends_failed_voided(floor: Floor) -> None:
    payment = pay(floor, floor.show_qr(), body(password="NotEnoughFunds")).get_json()
    assert (payment["status"], payment["reason"]) == ("FAILED_VOIDED", "BANK_NOT_ENOUGH_FUNDS")
    assert floor.meter() == 0


def test_unreachable_cms_answers_202_until_the_outcome_is_known(floor: Floor) -> None:
    code = floor.show_qr()
    floor.cms_fault(path="/cws/v1/fundings*", action="drop")  # sends and inquiries alike
    response = pay(floor, code)
    assert response.status_code == 202, response.get_data(as_text=True)
    payment = response.get_json()
    assert payment["status"] not in ("CREDITED", "REJECTED_VOIDED", "FAILED_VOIDED")
    assert response.headers["Location"] == f"/api/v1/payments/{payment['paymentId']}"
    assert floor.meter() == 0


def test_get_on_the_payments_path_is_405(floor: Floor) -> None:
    code = floor.show_qr()
    response = floor.trustly.get(f"/api/v1/scan/{code}/payments")
    assert response.status_code == 405
    assert floor.trustly.get(f"/api/v1/scan/{code}").get_json()["state"] == "ACTIVE"
