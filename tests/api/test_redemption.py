"""Redeeming a scanned QR: one claim per token ever, and a clear reason for every refusal.

Refusals must leave everything as it was: no payment, no credit, and (for refusals made
before the claim) a code that is still payable.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import delete

from sim_trustly.auth_service.issuance import flush_issued
from sim_trustly.models import Credential, Merchant, QrTokenRow
from sim_trustly.tpas import payments, redemption, state_machine
from sim_trustly.tpas.redemption import (
    QrCodeExpired,
    QrCodeInvalid,
    QrCodeUnknown,
    QrCodeUsed,
    QrCodeWrongMerchant,
)
from simkit.db import Database
from simkit.errors import SimError
from tests.api.tpas_support import (
    ADMIN,
    EGM,
    Casino,
    CasinoFactory,
    make_casino,
    replace_signing_key,
)

pytestmark = pytest.mark.db
__all__ = ["make_casino"]  # the fixture, used by name


@pytest.fixture
def casino(make_casino: CasinoFactory) -> Casino:
    return make_casino()


def refusal(casino: Casino, code: str) -> SimError:
    with pytest.raises(SimError) as caught:
        casino.pay(code)
    return caught.value


def used_at(casino: Casino, code: str) -> Any:
    flush_issued(casino.ctx.db)  # issued tokens are stored by a background writer
    with casino.ctx.db.read() as session:
        row = session.get(QrTokenRow, code)
        return row.used_at if row else None


@pytest.mark.parametrize("code", ["nope", "A" * 22, "../../etc", "x" * 65, "", "bad\x00code"])
def test_unknown_codes_are_404(casino: Casino, code: str) -> None:
    error = refusal(casino, code)
    assert isinstance(error, QrCodeUnknown)
    assert (error.http_status, error.code) == (404, "QR_CODE_UNKNOWN")


def test_a_second_claim_is_409_and_the_first_payment_stands(casino: Casino) -> None:
    code = casino.show_qr()
    first = casino.pay(code)
    error = refusal(casino, code)
    assert (error.http_status, error.code) == (409, "QR_CODE_USED")
    assert [p.id for p in payments.list_payments(casino.ctx.db)] == [first.payment_id]


def test_a_code_is_payable_until_the_second_before_its_expiry(casino: Casino) -> None:
    code = casino.show_qr()
    casino.clock.advance(299)
    assert casino.pay(code).status == "CREDITED"


def test_a_code_is_expired_at_its_expiry_exactly_despite_the_jwt_leeway(casino: Casino) -> None:
    code = casino.show_qr()
    casino.clock.advance(300)
    error = refusal(casino, code)
    assert isinstance(error, QrCodeExpired)
    assert (error.http_status, error.code) == (410, "QR_CODE_EXPIRED")
    assert used_at(casino, code) is None


def test_used_beats_expired(casino: Casino) -> None:
    code = casino.show_qr()
    casino.pay(code)
    casino.clock.advance(3600)
    assert isinstance(refusal(casino, code), QrCodeUsed)


def test_a_token_whose_key_was_removed_is_410_and_stays_unclaimed(casino: Casino) -> None:
    code = casino.show_qr()
    replace_signing_key(casino)
    error = refusal(casino, code)
    assert isinstance(error, QrCodeInvalid)
    assert (error.http_status, error.code) == (410, "QR_CODE_INVALID")
    assert used_at(casino, code) is None and casino.meter() == 0


def test_a_token_of_a_removed_merchant_is_403(casino: Casino) -> None:
    code = casino.show_qr()
    with casino.ctx.db.write() as session:
        session.execute(delete(Credential))
        session.execute(delete(Merchant))
    error = refusal(casino, code)
    assert isinstance(error, QrCodeWrongMerchant)
    assert (error.http_status, error.code) == (403, "QR_CODE_WRONG_MERCHANT")
    assert state_machine.describe_scan(casino.ctx, code).state == "WRONG_MERCHANT"


def test_a_stored_token_moved_to_another_merchant_is_403(casino: Casino) -> None:
    code = casino.show_qr()
    response = casino.trustly.post("/_sim/merchants", headers=ADMIN, json={
        "merchantId": "other-casino", "accessId": "other-id", "accessKey": "other-key-123"})
    assert response.status_code == 201
    flush_issued(casino.ctx.db)
    with casino.ctx.db.write() as session:
        row = session.get(QrTokenRow, code)
        assert row is not None
        row.merchant_id = "other-casino"  # the JWT still names demo-merchant
    assert isinstance(refusal(casino, code), QrCodeWrongMerchant)


def test_claims_through_separate_connections_pools_succeed_once(casino: Casino) -> None:
    """Two Database objects on one database behave like two worker processes."""
    code = casino.show_qr()
    workers = [Database(casino.ctx.db.url) for _ in range(4)]
    barrier = threading.Barrier(16)
    wins: list[int] = []

    def claim(n: int) -> None:
        db = workers[n % len(workers)]
        barrier.wait()
        try:
            with db.write() as session:
                redemption.claim(session, code, casino.clock.now())
            wins.append(n)
        except QrCodeUsed:
            pass

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for db in workers:
        db.dispose()
    assert len(wins) == 1 and used_at(casino, code) is not None


def test_describe_scan_follows_a_code_through_its_life(casino: Casino) -> None:
    code = casino.show_qr()
    active = state_machine.describe_scan(casino.ctx, code)
    assert (active.state, active.egm_id, active.merchant_name) == ("ACTIVE", EGM, "Demo Casino")
    assert active.payment is None and active.currency == "USD"
    assert active.suggested_amounts == (2000, 5000, 10000, 20000)
    view = casino.pay(code)
    used = state_machine.describe_scan(casino.ctx, code)
    assert used.state == "USED" and used.payment == view
    assert used.to_json()["payment"]["status"] == "CREDITED"


def test_describe_scan_of_expired_and_unknown_codes(casino: Casino) -> None:
    code = casino.show_qr()
    casino.clock.advance(300)
    assert state_machine.describe_scan(casino.ctx, code).state == "EXPIRED"
    unknown = state_machine.describe_scan(casino.ctx, "no-such-code")
    assert (unknown.state, unknown.egm_id, unknown.expires_at) == ("UNKNOWN", None, None)
    assert unknown.to_json()["expiresAt"] is None


GOOD = {"amount": 2000, "currency": "USD", "bank": {"username": "alice", "password": "pw"}}


@pytest.mark.parametrize(("body", "code", "field"), [
    ([], "INVALID_REQUEST", None),
    ({**GOOD, "amount": None}, "MISSING_FIELD", "amount"),
    ({**GOOD, "amount": 20.0}, "INVALID_AMOUNT", "amount"),
    ({**GOOD, "amount": -5}, "INVALID_AMOUNT", "amount"),
    ({**GOOD, "amount": True}, "INVALID_AMOUNT", "amount"),
    ({**GOOD, "currency": "usd"}, "INVALID_CURRENCY", "currency"),
    ({"amount": 2000, "bank": GOOD["bank"]}, "MISSING_FIELD", "currency"),
    ({**GOOD, "bank": "alice:pw"}, "INVALID_FIELD", "bank"),
    ({**GOOD, "bank": {"username": "alice"}}, "MISSING_FIELD", "bank.password"),
    ({**GOOD, "bank": {"username": "", "password": "pw"}}, "INVALID_FIELD", "bank.username"),
    ({**GOOD, "bank": {"username": "a\nb", "password": "pw"}}, "INVALID_FIELD",
     "bank.username"),
    ({**GOOD, "bank": {"username": "a", "password": "p" * 129}}, "INVALID_FIELD",
     "bank.password"),
])
def test_bad_payment_bodies_are_400_with_the_field(body: Any, code: str, field: Any) -> None:
    with pytest.raises(SimError) as caught:
        state_machine.parse_payment_request(body)
    assert caught.value.http_status == 400
    assert caught.value.code == code
    assert caught.value.extra.get("field") == field


def test_a_good_body_parses_and_never_shows_the_password() -> None:
    request = state_machine.parse_payment_request({**GOOD, "extra": "ignored"})
    assert (request.amount, request.currency, request.username) == (2000, "USD", "alice")
    assert "pw" not in repr(request)


def test_a_missing_payment_is_404(casino: Casino) -> None:
    for payment_id in ("0" * 32, "not-an-id", ""):
        with pytest.raises(SimError) as caught:
            state_machine.get_payment(casino.ctx, payment_id)
        assert (caught.value.http_status, caught.value.code) == (404, "PAYMENT_NOT_FOUND")
