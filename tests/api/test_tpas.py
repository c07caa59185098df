"""TPAS end to end in-process: a scanned QR becomes exactly one credit, or none, whatever the
bank, the CMS, the network and a second phone do; and reconciliation always comes out empty.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sim_trustly.tpas import payments, recovery, state_machine
from sim_trustly.tpas.redemption import QrCodeExpired, QrCodeUsed
from simkit.errors import SimError
from simkit.wait import poll_until
from tests.api.tpas_support import (
    ADMIN,
    EGM,
    Casino,
    CasinoFactory,
    make_casino,
    unique_user,
)
from tests.conftest import cms_bearer

pytestmark = pytest.mark.db
__all__ = ["make_casino"]  # the fixture, used by name


@pytest.fixture
def casino(make_casino: CasinoFactory) -> Casino:
    return make_casino()


def assert_nothing_moved(casino: Casino) -> None:
    assert casino.meter() == 0
    assert casino.ledger()["appliedTotal"] == 0
    assert casino.reconciliation()["reconciled"]


def assert_credited_once(casino: Casino, view: payments.PaymentView, amount: int = 2000) -> None:
    assert view.status == "CREDITED", view
    assert casino.meter() == amount
    ledger = casino.ledger()
    assert ledger["appliedTotal"] == amount and ledger["balanced"]
    applied = [f for f in casino.cms_fundings() if f["outcome"] == "APPLIED"]
    assert [f["transactionId"] for f in applied] == [view.transaction_id]
    report = casino.reconciliation()
    assert report["reconciled"], report
    assert report["trustlyTotal"] == report["cmsTotal"] == amount


# --- the happy path and the QR's single use -------------------------------------------------


def test_a_payment_credits_the_meter_uses_the_limit_and_reconciles(casino: Casino) -> None:
    user = unique_user()
    used_before = casino.limit(user)["usedToday"]
    view = casino.pay(casino.show_qr(), 2500, username=user)
    assert_credited_once(casino, view, 2500)
    assert view.credit_meter == 2500 and view.egm_id == EGM and view.reason is None
    assert casino.limit(user)["usedToday"] == used_before + 2500
    assert casino.events(view.payment_id) == [
        "CREATED", "BANK_AUTHORIZED", "LIMIT_CHECKED", "FUNDING_SENT", "CREDITED"]
    assert casino.status(view.payment_id) == view


def test_the_wire_shape_of_a_credited_payment(casino: Casino) -> None:
    body = casino.pay(casino.show_qr()).to_json()
    assert set(body) == {"paymentId", "status", "transactionId", "egmId", "amount", "currency",
                         "creditMeter"}
    assert body["status"] == "CREDITED" and body["amount"] == 2000


def test_replayed_qr_is_rejected_after_credit(casino: Casino) -> None:
    code = casino.show_qr()
    view = casino.pay(code)
    with pytest.raises(QrCodeUsed) as refused:
        casino.pay(code, username="someone-else")
    assert refused.value.http_status == 409
    assert_credited_once(casino, view)


def test_32_phones_paying_one_qr_credit_exactly_once(casino: Casino) -> None:
    code = casino.show_qr()
    barrier = threading.Barrier(32)
    outcomes: list[Any] = []
    lock = threading.Lock()

    def phone(n: int) -> None:
        barrier.wait()
        try:
            result: Any = casino.pay(code, username=f"phone-{n}")
        except QrCodeUsed as exc:
            result = exc
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=phone, args=(n,)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    credited = [o for o in outcomes if isinstance(o, payments.PaymentView)]
    assert len(outcomes) == 32 and len(credited) == 1
    assert all(isinstance(o, QrCodeUsed) for o in outcomes if o is not credited[0])
    assert_credited_once(casino, credited[0])


def test_expired_qr_is_refused_and_nothing_moves(casino: Casino) -> None:
    code = casino.show_qr()
    casino.clock.advance(300)
    with pytest.raises(QrCodeExpired) as refused:
        casino.pay(code)
    assert refused.value.http_status == 410
    assert payments.list_payments(casino.ctx.db) == []
    assert_nothing_moved(casino)


# --- the demo bank ----------------------------------------------------------------------------


@pytest.mark.parametrize(("password", "reason"), [
    ("NotEnoughFunds", "BANK_NOT_ENOUGH_FUNDS"),
    ("my-loginerror-pw", "BANK_LOGIN_ERROR"),
    ("ACCOUNTLOCKED", "BANK_ACCOUNT_LOCKED"),
    ("Unavailable", "BANK_UNAVAILABLE"),
    ("TimeoutError", "BANK_TIMEOUT"),
])
def test_every_bank_keyphrase_fails_the_payment_and_sends_nothing(
    casino: Casino, password: str, reason: str
) -> None:
    view = casino.pay(casino.show_qr(), password=password)
    assert (view.status, view.reason) == ("FAILED_VOIDED", reason)
    assert casino.events(view.payment_id) == ["CREATED", "BANK_REFUSED"]
    assert casino.cms_fundings() == []
    assert_nothing_moved(casino)


def test_a_bank_timeout_leaves_the_shared_clock_where_it_is(casino: Casino) -> None:
    code = casino.show_qr()
    before = casino.clock.now()
    casino.pay(code, password="TimeoutError")
    assert casino.clock.now() == before


def test_a_sleep_payment_pays_moves_no_clock_and_expires_no_other_qr(casino: Casino) -> None:
    other = casino.show_qr("EGM-002")  # shown on the next machine before the slow player pays
    before = casino.clock.now()
    view = casino.pay(casino.show_qr(), username="Sleep", password="600")
    assert casino.clock.now() == before
    assert_credited_once(casino, view)
    assert casino.pay(other).status == "CREDITED"


def test_sleep_beyond_the_bound_is_a_login_error(casino: Casino) -> None:
    view = casino.pay(casino.show_qr(), username="sleep", password="601")
    assert (view.status, view.reason) == ("FAILED_VOIDED", "BANK_LOGIN_ERROR")
    assert_nothing_moved(casino)


# --- CMS rejections -------------------------------------------------------------------------


def assert_rejected(casino: Casino, view: payments.PaymentView, reason: str) -> None:
    assert (view.status, view.reason) == ("REJECTED_VOIDED", reason), view
    assert "BANK_VOIDED" in casino.events(view.payment_id)
    assert_nothing_moved(casino)


@pytest.mark.parametrize(("state", "reason"), [
    ("IN_GAME", "EGM_BUSY"), ("DOOR_OPEN", "EGM_DOOR_OPEN"), ("TILT", "EGM_TILT"),
    ("OFFLINE", "EGM_OFFLINE"),
])
def test_each_egm_state_that_refuses_credit_voids_the_payment(
    casino: Casino, state: str, reason: str
) -> None:
    code = casino.show_qr()
    casino.change_egm(state=state)
    assert_rejected(casino, casino.pay(code), reason)


def test_an_egm_the_cms_does_not_know_voids_the_payment(casino: Casino) -> None:
    assert_rejected(casino, casino.pay(casino.issue_qr("EGM-404")), "EGM_NOT_FOUND")


def test_a_qr_the_egm_never_displayed_voids_the_payment(casino: Casino) -> None:
    assert_rejected(casino, casino.pay(casino.issue_qr(EGM)), "QR_TOKEN_MISMATCH")


def test_the_meter_cap_voids_the_payment(casino: Casino) -> None:
    casino.change_egm(creditLimit=1000)
    assert_rejected(casino, casino.pay(casino.show_qr(), 2000), "CREDIT_LIMIT_EXCEEDED")


def test_a_currency_trustly_does_not_pay_is_refused_before_the_qr_is_claimed(
    casino: Casino,
) -> None:
    """Nothing that can be refused up front may cost the player the QR: the EUR attempt is
    refused with nothing claimed or authorized, and the retry in USD pays with the same QR."""
    code = casino.show_qr()
    with pytest.raises(SimError) as refused:
        casino.pay(code, currency="EUR")
    assert (refused.value.code, refused.value.http_status) == ("CURRENCY_NOT_SUPPORTED", 422)
    assert refused.value.extra == {"field": "currency", "expected": "USD"}  # what to send
    assert casino.meter() == 0
    paid = casino.pay(code, currency="USD")
    assert paid.status == "CREDITED"
    assert casino.meter() == 2000


def test_a_daily_limit_too_low_stops_the_payment_before_funding(casino: Casino) -> None:
    user = unique_user()
    casino.set_limit(user, 1500)
    view = casino.pay(casino.show_qr(), 2000, username=user)
    assert_rejected(casino, view, "DAILY_LIMIT_EXCEEDED")
    assert "FUNDING_SENT" not in casino.events(view.payment_id)
    assert casino.cms_fundings() == []


def test_the_limit_follows_the_bank_account_across_payments(casino: Casino) -> None:
    user = unique_user()
    casino.set_limit(user, 3000)
    assert casino.pay(casino.show_qr(), 2000, username=user).status == "CREDITED"
    second = casino.pay(casino.show_qr(), 2000, username=user.upper())
    assert (second.status, second.reason) == ("REJECTED_VOIDED", "DAILY_LIMIT_EXCEEDED")
    assert casino.meter() == 2000 and casino.reconciliation()["reconciled"]


def test_the_cms_enforces_the_limit_when_the_limits_api_does_not_answer(casino: Casino) -> None:
    user = unique_user()
    casino.set_limit(user, 1500)
    casino.fault(method="GET", path="/cws/v1/limits/*", action="status", status=500)
    view = casino.pay(casino.show_qr(), 2000, username=user)
    assert_rejected(casino, view, "DAILY_LIMIT_EXCEEDED")
    assert [f["outcome"] for f in casino.cms_fundings()] == ["REJECTED"]


# --- faults on the way to the CMS ----------------------------------------------------------


def test_applied_then_dropped_funding_is_credited_once(casino: Casino) -> None:
    code = casino.show_qr()
    casino.fault(method="POST", path="/cws/v1/fundings", action="apply_then_drop", times=1)
    view = casino.pay(code)
    assert_credited_once(casino, view)
    kinds = casino.events(view.payment_id)
    assert "FUNDING_UNKNOWN" in kinds and "INQUIRY" in kinds
    assert kinds.count("FUNDING_SENT") == 1  # the inquiry found it applied: no resend


def test_two_503s_then_success_credit_once(casino: Casino) -> None:
    code = casino.show_qr()
    casino.fault(method="POST", path="/cws/v1/fundings", action="status", status=503, times=2)
    view = casino.pay(code)
    assert_credited_once(casino, view)
    assert casino.events(view.payment_id).count("FUNDING_SENT") == 3


def test_a_cms_slower_than_the_read_timeout_credits_at_most_once(
    make_casino: CasinoFactory,
) -> None:
    casino = make_casino(over_http=True, read_timeout_s=0.3)
    code = casino.show_qr()
    casino.fault(method="POST", path="/cws/v1/fundings", action="delay", delayMs=1500, times=1)
    view = casino.pay(code)
    # The delayed request finishes on the server's own time: wait (bounded) for it.
    poll_until(lambda: casino.cms_fundings() or None, timeout_s=10, interval_s=0.05)
    if view.status == "FUNDING":
        casino.clock.advance(60)
        state_machine.recover_payments(casino.ctx)
        view = casino.status(view.payment_id)
    assert_credited_once(casino, view)
    assert "FUNDING_UNKNOWN" in casino.events(view.payment_id)


def test_an_access_token_that_expires_mid_run_is_refreshed(make_casino: CasinoFactory) -> None:
    casino = make_casino(own_cms_clock=True)
    first = casino.pay(casino.show_qr())
    # TPAS's clock says its token is still good; the CMS's says it expired: a 401 tells TPAS.
    casino.clock.advance(200)
    casino.cms_clock.advance(301)
    casino.bearer = cms_bearer(casino.cms)
    code = casino.show_qr()
    casino.cms.delete("/_sim/journal", headers=ADMIN)
    second = casino.pay(code)
    assert first.status == second.status == "CREDITED"
    assert casino.meter() == 4000 and casino.reconciliation()["reconciled"]
    journal = casino.cms.get("/_sim/journal", headers=ADMIN)
    statuses = [(e["path"], e["status"]) for e in journal.get_json()["entries"]]
    assert any(status == 401 for _, status in statuses)
    assert sum(path == "/cws/v1/oauth/token" for path, _ in statuses) == 1


def test_an_access_token_near_its_end_is_renewed_before_use(casino: Casino) -> None:
    casino.pay(casino.show_qr())
    casino.clock.advance(290)
    assert casino.pay(casino.show_qr()).status == "CREDITED"
    assert casino.meter() == 4000


# --- recovery -------------------------------------------------------------------------------


def park_in_funding(casino: Casino, **first_fault: Any) -> payments.PaymentView:
    """A payment whose CMS stopped answering mid-funding: TPAS leaves it in FUNDING."""
    code = casino.show_qr()
    if first_fault:
        casino.fault(**first_fault)
    casino.fault(path="/cws/v1/fundings*", action="drop", times=1000)
    view = casino.pay(code)
    assert view.status == "FUNDING" and casino.meter() in (0, 2000)
    return view


def test_the_sweep_finishes_a_payment_left_in_funding(casino: Casino) -> None:
    view = park_in_funding(casino)
    assert casino.meter() == 0
    casino.clear_faults()
    assert state_machine.recover_payments(casino.ctx) == 0  # still within its retry delay
    casino.clock.advance(60)
    assert state_machine.recover_payments(casino.ctx) == 1
    assert_credited_once(casino, casino.status(view.payment_id))


def test_the_sweep_finds_a_funding_applied_before_the_cms_went_silent(casino: Casino) -> None:
    view = park_in_funding(casino, method="POST", path="/cws/v1/fundings",
                           action="apply_then_drop", times=1)
    assert casino.meter() == 2000
    casino.clear_faults()
    casino.clock.advance(60)
    state_machine.recover_payments(casino.ctx)
    after = casino.status(view.payment_id)
    assert_credited_once(casino, after)
    assert after.credit_meter == 2000


def test_a_pass_over_all_takes_over_payments_a_dead_process_held(casino: Casino) -> None:
    view = park_in_funding(casino)
    casino.clear_faults()
    assert state_machine.recover_payments(casino.ctx, include_leased=True) == 1
    assert_credited_once(casino, casino.status(view.payment_id))


def test_tpas_gives_up_only_when_the_cms_never_saw_the_funding(casino: Casino) -> None:
    code = casino.show_qr()
    casino.fault(method="POST", path="/cws/v1/fundings", action="status", status=503)
    view = casino.pay(code)
    assert view.status == "FUNDING"
    casino.clock.advance(120)
    state_machine.recover_payments(casino.ctx)
    assert casino.status(view.payment_id).status == "FUNDING"  # too young to give up
    casino.clock.advance(900)
    assert state_machine.recover_payments(casino.ctx) == 1
    final = casino.status(view.payment_id)
    assert (final.status, final.reason) == ("FAILED_VOIDED", "CMS_UNREACHABLE")
    assert "BANK_VOIDED" in casino.events(view.payment_id)
    assert_nothing_moved(casino)


def test_an_unreachable_cms_keeps_the_payment_open_until_it_answers(casino: Casino) -> None:
    view = park_in_funding(casino)
    casino.clock.advance(3600)
    state_machine.recover_payments(casino.ctx)
    assert casino.status(view.payment_id).status == "FUNDING"
    casino.clear_faults()
    casino.clock.advance(60)
    state_machine.recover_payments(casino.ctx)
    # Past the give-up age TPAS only asks; the CMS never saw it, so it is voided, not sent.
    final = casino.status(view.payment_id)
    assert (final.status, final.reason) == ("FAILED_VOIDED", "CMS_UNREACHABLE")
    assert_nothing_moved(casino)


def test_a_crash_during_the_bank_step_ends_failed_without_funding(
    casino: Casino, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = casino.show_qr()

    def crash(*args: object) -> None:
        raise RuntimeError("process died")

    monkeypatch.setattr("sim_trustly.microsite.demo_bank.authorize", crash)
    with pytest.raises(RuntimeError):
        casino.pay(code)
    monkeypatch.undo()
    (row,) = payments.list_payments(casino.ctx.db)
    assert row.status == "CREATED"
    casino.clock.advance(casino.ctx.settings.tpas_stale_after_s + 600)
    assert state_machine.recover_payments(casino.ctx) == 1
    final = casino.status(row.id)
    assert (final.status, final.reason) == ("FAILED_VOIDED", "BANK_INCOMPLETE")
    with pytest.raises(QrCodeUsed):
        casino.pay(code)
    assert_nothing_moved(casino)


def test_a_crash_after_the_bank_approved_is_funded_by_the_sweep(
    casino: Casino, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = casino.show_qr()

    def crash(*args: object) -> None:
        raise RuntimeError("process died")

    monkeypatch.setattr(state_machine, "fund_authorized", crash)
    with pytest.raises(RuntimeError):
        casino.pay(code)
    monkeypatch.undo()
    (row,) = payments.list_payments(casino.ctx.db)
    assert row.status == "AUTHORIZED"
    casino.clock.advance(casino.ctx.settings.tpas_lease_s)
    assert state_machine.recover_payments(casino.ctx) == 1
    final = casino.status(row.id)
    assert final.transaction_id == row.transaction_id
    assert_credited_once(casino, final)


def test_the_recovery_worker_sweeps_on_its_own(casino: Casino) -> None:
    view = park_in_funding(casino)
    casino.clear_faults()
    casino.clock.advance(60)
    worker = recovery.start_recovery_worker(casino.trustly_app, interval_s=0.02)
    try:
        poll_until(lambda: casino.status(view.payment_id).status != "FUNDING" or None,
                   timeout_s=10, interval_s=0.02)
    finally:
        worker.stop()
    assert not worker.thread.is_alive()
    assert_credited_once(casino, casino.status(view.payment_id))
