"""What TPAS's control API shows of a payment's life, and who may work on an open payment.

An operator (and the harness's reports) reads `GET /_sim/payments/<id>`: a finished payment
holds no lease (`nextAttemptAt` is null, no sweep will touch it again), `attempts` counts
the funding requests actually sent, and a void names the bank account and the payment it
voided. While one actor holds an open payment's lease, another sweep does not take it over.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from sim_trustly.tpas import state_machine
from sim_trustly.tpas.state_machine import recover_one
from simkit.clock import format_instant
from tests.api.tpas_support import ADMIN, Casino, CasinoFactory, make_casino

pytestmark = pytest.mark.db
__all__ = ["make_casino"]  # the fixture, used by name

FUNDINGS = "/cws/v1/fundings"


@pytest.fixture
def casino(make_casino: CasinoFactory) -> Casino:
    return make_casino()


def record(casino: Casino, payment_id: str) -> dict[str, Any]:
    """The payment and its history as the control API shows them."""
    response = casino.trustly.get(f"/_sim/payments/{payment_id}", headers=ADMIN)
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    return body


def kinds(body: dict[str, Any]) -> list[str]:
    return [event["kind"] for event in body["events"]]


def detail(body: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [event["detail"] for event in body["events"] if event["kind"] == kind]
    return found  # type: ignore[no-any-return]


def test_a_credited_payment_holds_no_lease_and_counts_one_request(casino: Casino) -> None:
    view = casino.pay(casino.show_qr())
    body = record(casino, view.payment_id)
    assert (body["status"], body["nextAttemptAt"], body["attempts"]) == ("CREDITED", None, 1)
    assert kinds(body).count("FUNDING_SENT") == 1
    credited = detail(body, "CREDITED")
    assert (credited["outcome"], credited["creditMeter"]) == ("APPLIED", 2000)


def test_a_payment_the_sweep_credits_counts_only_the_requests_it_sent(casino: Casino) -> None:
    code = casino.show_qr()
    casino.fault(method="POST", path=FUNDINGS, action="status", status=503)
    view = casino.pay(code)
    casino.clear_faults()
    casino.clock.advance(60)
    assert state_machine.recover_payments(casino.ctx) == 1
    body = record(casino, view.payment_id)
    assert (body["status"], body["nextAttemptAt"]) == ("CREDITED", None)
    assert body["attempts"] == kinds(body).count("FUNDING_SENT") > 1
    lease_until = casino.clock.now() + timedelta(seconds=casino.ctx.settings.tpas_lease_s)
    assert detail(body, "RECOVERY_LEASE") == {"until": format_instant(lease_until)}


def test_a_voided_payment_holds_no_lease_and_its_void_names_account_and_payment(
    casino: Casino,
) -> None:
    casino.change_egm(state="IN_GAME")
    view = casino.pay(casino.show_qr())
    body = record(casino, view.payment_id)
    assert (body["status"], body["reason"]) == ("REJECTED_VOIDED", "EGM_BUSY")
    assert body["nextAttemptAt"] is None
    rejected = detail(body, "REJECTED")
    assert (rejected["outcome"], rejected["code"], rejected["httpStatus"]) == (
        "REJECTED", "EGM_BUSY", 409)
    account = detail(body, "BANK_AUTHORIZED")["account"]
    assert detail(body, "BANK_VOIDED") == {"account": account, "paymentId": view.payment_id,
                                           "voided": True}
    assert casino.meter() == 0


def test_a_payment_given_up_holds_no_lease(casino: Casino) -> None:
    code = casino.show_qr()
    casino.fault(method="POST", path=FUNDINGS, action="status", status=503)
    view = casino.pay(code)
    casino.clock.advance(casino.ctx.settings.tpas_give_up_after_s + 60)
    assert state_machine.recover_payments(casino.ctx) == 1
    body = record(casino, view.payment_id)
    assert (body["status"], body["reason"], body["nextAttemptAt"]) == (
        "FAILED_VOIDED", "CMS_UNREACHABLE", None)
    assert detail(body, "BANK_VOIDED")["paymentId"] == view.payment_id
    assert detail(body, "GAVE_UP")["outcome"] == "NOT_FOUND"


def test_a_parked_payment_says_when_the_sweep_tries_again(casino: Casino) -> None:
    code = casino.show_qr()
    casino.fault(method="POST", path=FUNDINGS, action="status", status=503)
    view = casino.pay(code)
    backoff_s = casino.ctx.settings.cms.retries.backoff_cap_s
    retry_at = format_instant(casino.clock.now() + timedelta(seconds=backoff_s))
    body = record(casino, view.payment_id)
    assert (body["status"], body["nextAttemptAt"]) == ("FUNDING", retry_at)
    parked = detail(body, "PARKED")
    assert (parked["retryAt"], parked["outcome"]) == (retry_at, "NOT_FOUND")


def test_at_the_give_up_age_tpas_only_asks_and_gives_up(casino: Casino) -> None:
    code = casino.show_qr()
    casino.fault(method="POST", path=FUNDINGS, action="status", status=503)
    view = casino.pay(code)
    sent = kinds(record(casino, view.payment_id)).count("FUNDING_SENT")
    casino.clock.advance(casino.ctx.settings.tpas_give_up_after_s)  # to the second
    assert state_machine.recover_payments(casino.ctx) == 1
    body = record(casino, view.payment_id)
    assert (body["status"], body["reason"]) == ("FAILED_VOIDED", "CMS_UNREACHABLE")
    assert kinds(body).count("FUNDING_SENT") == sent  # nothing more was sent
    assert casino.meter() == 0


def test_a_second_sweep_does_not_take_a_payment_whose_lease_runs(casino: Casino) -> None:
    code = casino.show_qr()
    casino.fault(method="POST", path=FUNDINGS, action="drop", times=1000)
    view = casino.pay(code)
    assert view.status == "FUNDING"
    before = record(casino, view.payment_id)
    assert before["nextAttemptAt"] is not None
    # Another worker's lane listed it a moment ago; the lease it now holds says hands off.
    assert recover_one(casino.ctx, view.payment_id) is None
    after = record(casino, view.payment_id)
    assert after["events"] == before["events"] and after["attempts"] == before["attempts"]
    # Once the lease has run out, a sweep takes it over.
    casino.clear_faults()
    casino.clock.advance(60)
    taken = recover_one(casino.ctx, view.payment_id)
    assert taken is not None and taken.status == "CREDITED"
