"""What the phone is told when a scanned code cannot pay: the reason, and words a player reads.

The microsite shows the `message` of Trustly's error body as it is, so its wording is part of
what a player sees: each refusal says what happened to the code and, where there is one,
what to do next.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete

from sim_trustly.models import Credential, Merchant
from tests.api.tpas_support import Casino, CasinoFactory, make_casino, replace_signing_key

pytestmark = pytest.mark.db
__all__ = ["make_casino"]  # the fixture, used by name

BODY = {"amount": 2000, "currency": "USD", "bank": {"username": "alice", "password": "pw"}}


@pytest.fixture
def casino(make_casino: CasinoFactory) -> Casino:
    return make_casino()


def phone_refusal(casino: Casino, code: str) -> tuple[int, dict[str, Any]]:
    """The status and the one error item the phone gets for paying `code`."""
    response = casino.trustly.post(f"/api/v1/scan/{code}/payments", json=BODY)
    (item,) = response.get_json()["errors"]
    return response.status_code, item


def test_a_code_never_issued(casino: Casino) -> None:
    status, item = phone_refusal(casino, "A" * 22)
    assert (status, item["reason"]) == (404, "QR_CODE_UNKNOWN")
    assert item["message"] == "this QR code is not known"


def test_a_code_already_paid(casino: Casino) -> None:
    code = casino.show_qr()
    casino.pay(code)
    status, item = phone_refusal(casino, code)
    assert (status, item["reason"]) == (409, "QR_CODE_USED")
    assert item["message"] == "this QR code has already been used"


def test_an_expired_code_tells_the_player_to_scan_the_new_one(casino: Casino) -> None:
    code = casino.show_qr()
    casino.clock.advance(300)
    status, item = phone_refusal(casino, code)
    assert (status, item["reason"]) == (410, "QR_CODE_EXPIRED")
    assert item["message"] == "this QR code has expired; scan the new one"


def test_a_code_whose_signing_key_is_gone(casino: Casino) -> None:
    code = casino.show_qr()
    replace_signing_key(casino)
    status, item = phone_refusal(casino, code)
    assert (status, item["reason"]) == (410, "QR_CODE_INVALID")
    assert item["message"] == "this QR code can no longer be used"


def test_a_code_of_a_merchant_that_may_no_longer_take_payments(casino: Casino) -> None:
    code = casino.show_qr()
    with casino.ctx.db.write() as session:
        session.execute(delete(Credential))
        session.execute(delete(Merchant))
    status, item = phone_refusal(casino, code)
    assert (status, item["reason"]) == (403, "QR_CODE_WRONG_MERCHANT")
    assert item["message"] == "this QR code does not belong to a merchant that may take payments"
