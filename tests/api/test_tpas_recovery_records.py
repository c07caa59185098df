"""What a recovery pass, the background sweep and start-up's lease release do to TPAS's
payments, as the control API and the CMS show it.

An operator reads `POST /_sim/payments/recover`'s counts (`finished` in this pass, `open`
after it) and each payment's record: start-up ends only the leases that still run and says
so in their history; a bank step that never finished is voided as recovered from CREATED;
a payment may be given up only when *its own* last request is old. Two merchants with CMSs
of their own show that a broken partner adapter holds up neither a pass nor another CMS's
lane of the sweep.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest

from sim_trustly.cms_client.partner_profiles import DEFAULT_CMS_PROFILE, CmsProfile
from sim_trustly.cms_client.protocol import FundingCall, FundingResult, LimitResult
from sim_trustly.microsite import demo_bank
from sim_trustly.tpas import recovery, state_machine
from sim_trustly.tpas.recovery import RecoverySweeper
from simkit.clock import format_instant
from simkit.wait import poll_until
from tests.api.test_tpas_payment_records import detail, kinds, record
from tests.api.tpas_support import ADMIN, EGM, Casino, CasinoFactory, make_casino, unique_user
from tests.conftest import START, basic

pytestmark = pytest.mark.db
__all__ = ["make_casino"]  # the fixture, used by name

FUNDINGS = "/cws/v1/fundings"
BATCH = 500  # the most payments one pass, or one lane, takes
OTHER = "other-casino"  # a second merchant, whose CMS is the deployment's default profile
OTHER_AUTH = basic("other-access-id", "other-access-key-0001")


class BrokenAdapter:
    """A partner adapter that fails on every call (a broken partner profile)."""

    def __init__(self, profile: CmsProfile, transport: httpx.BaseTransport | None) -> None:
        self.profile = profile

    def get_limit(self, ubai: str) -> LimitResult:
        raise RuntimeError("broken partner adapter")

    def post_funding(self, call: FundingCall) -> FundingResult:
        raise RuntimeError("broken partner adapter")

    def get_funding(self, transaction_id: str) -> FundingResult:
        raise RuntimeError("broken partner adapter")

    def close(self) -> None:
        """Nothing to close."""


def recover(casino: Casino, **body: Any) -> dict[str, Any]:
    """`POST /_sim/payments/recover`: one pass now; its counts."""
    response = casino.trustly.post("/_sim/payments/recover", json=body, headers=ADMIN)
    assert response.status_code == 200, response.get_data(as_text=True)
    counts: dict[str, Any] = response.get_json()
    return counts


def crash_at_funding(casino: Casino, code: str, monkeypatch: pytest.MonkeyPatch,
                     username: str = "alice") -> str:
    """Pay with `code` in a process that dies just before its first funding request: the
    payment is left AUTHORIZED under that process's lease. Its id."""
    def crash(*args: object) -> None:
        raise RuntimeError("process died")

    with monkeypatch.context() as patch:
        patch.setattr(state_machine, "fund_authorized", crash)
        with pytest.raises(RuntimeError):
            casino.pay(code, username=username)
    return only_new_payment(casino, code)


def only_new_payment(casino: Casino, code: str) -> str:
    """The id of the one payment made with `code`, from the control API's list."""
    response = casino.trustly.get("/_sim/payments", headers=ADMIN)
    assert response.status_code == 200
    (found,) = [p["paymentId"] for p in response.get_json()["payments"] if p["qrCode"] == code]
    return str(found)


def parked(casino: Casino) -> str:
    """A payment the CMS never answered: parked in FUNDING until the profile's backoff."""
    casino.fault(path=f"{FUNDINGS}*", action="drop", times=10_000)
    view = casino.pay(casino.show_qr(), username=unique_user())
    casino.clear_faults()
    assert view.status == "FUNDING"
    return view.payment_id


def two_merchants(make_casino: CasinoFactory) -> Casino:
    """demo-merchant paid through its own profile (the in-process CMS); `OTHER` through the
    default profile, whose adapter is broken and whose CMS backs off for an hour."""
    broken = replace(DEFAULT_CMS_PROFILE, base_url="http://cms.invalid",
                     adapter=f"{__name__}:BrokenAdapter",
                     retries=replace(DEFAULT_CMS_PROFILE.retries, backoff_cap_s=3600))
    own = replace(DEFAULT_CMS_PROFILE, name="demo-cms", base_url="http://cms.invalid")
    casino = make_casino(cms=broken, cms_profiles={"demo-merchant": own})
    body = {"merchantId": OTHER, "accessId": "other-access-id",
            "accessKey": "other-access-key-0001", "name": "Other Casino"}
    response = casino.trustly.post("/_sim/merchants", json=body, headers=ADMIN)
    assert response.status_code == 201, response.get_data(as_text=True)
    return casino


def pay_other(casino: Casino) -> str:
    """A payment at `OTHER`: its broken adapter fails the funding step, leaving it
    AUTHORIZED. Its id."""
    response = casino.trustly.post("/auth-service/api/oauth2/qrcode/token",
                                   json={"merchantId": OTHER, "egmId": "EGM-900"},
                                   headers={"Authorization": OTHER_AUTH})
    assert response.status_code == 200, response.get_data(as_text=True)
    code = str(response.get_json()["url"]).rsplit("/", 1)[-1]
    with pytest.raises(RuntimeError, match="broken partner adapter"):
        casino.pay(code, username=unique_user())
    payment_id = only_new_payment(casino, code)
    assert record(casino, payment_id)["status"] == "AUTHORIZED"
    return payment_id


def settle(sweeper: RecoverySweeper) -> None:
    """Wait (bounded) until no lane is queued or running."""
    assert poll_until(lambda: not sweeper.in_flight() or None, timeout_s=10, interval_s=0.01), \
        "a recovery lane did not finish within 10 s"


def test_start_up_ends_only_the_leases_that_still_run_and_says_so(
        make_casino: CasinoFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lease that has run out (or runs out this very second) needs no release: the sweep
    may take that payment already. Only a dead process's running lease is ended, its end
    set to now (so the first tick takes it), and its history says when."""
    casino = make_casino()
    leased = crash_at_funding(casino, casino.show_qr(), monkeypatch)
    casino.clock.advance(4)
    ran_out = parked(casino)  # its lease ends 8 s after it was parked
    casino.clock.advance(4)
    ends_now = parked(casino)
    now = casino.clock.advance(8)
    before = {pid: record(casino, pid) for pid in (ran_out, ends_now)}
    assert before[ends_now]["nextAttemptAt"] == format_instant(now)

    assert recovery.release_leases_at_startup(casino.trustly_app) == 1

    body = record(casino, leased)
    assert (body["status"], body["nextAttemptAt"], body["updatedAt"]) == (
        "AUTHORIZED", format_instant(now), format_instant(now))
    assert kinds(body)[-1] == "LEASE_RELEASED"
    assert detail(body, "LEASE_RELEASED") == {"at": format_instant(now)}
    for pid in (ran_out, ends_now):
        assert record(casino, pid) == before[pid]  # untouched: no event, same lease
    assert casino.cms_fundings() == []  # nothing was sent to the CMS


def test_a_bank_step_that_never_finished_is_voided_as_recovered_from_created(
        make_casino: CasinoFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that died during the bank step sent nothing to the CMS: the pass ends the
    payment FAILED_VOIDED (BANK_INCOMPLETE) and its history says it was recovered from
    CREATED."""
    casino = make_casino()
    code = casino.show_qr()

    def died(*args: object) -> None:
        raise RuntimeError("process died")

    with monkeypatch.context() as patch:
        patch.setattr(demo_bank, "authorize", died)
        with pytest.raises(RuntimeError):
            casino.pay(code)
    payment_id = only_new_payment(casino, code)
    assert record(casino, payment_id)["status"] == "CREATED"
    casino.clock.advance(casino.ctx.settings.tpas_stale_after_s + demo_bank.MAX_SLEEP_S)

    assert recover(casino) == {"finished": 1, "open": 0}
    body = record(casino, payment_id)
    assert (body["status"], body["reason"], body["nextAttemptAt"]) == (
        "FAILED_VOIDED", "BANK_INCOMPLETE", None)
    assert kinds(body)[-1] == "RECOVERED"
    assert detail(body, "RECOVERED") == {"from": "CREATED"}
    assert casino.cms_fundings() == []


def test_a_pass_counts_every_payment_it_finished(
        make_casino: CasinoFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """`finished` is the number of payments this pass brought to an outcome, not whether
    the last one did."""
    casino = make_casino()
    first = crash_at_funding(casino, casino.show_qr(), monkeypatch, unique_user())
    second = crash_at_funding(casino, casino.show_qr(), monkeypatch, unique_user())
    casino.clock.advance(casino.ctx.settings.tpas_lease_s)
    assert recover(casino) == {"finished": 2, "open": 0}
    assert {casino.status(pid).status for pid in (first, second)} == {"CREDITED"}
    assert casino.meter() == 4000


def test_a_pass_does_not_count_a_payment_it_parked_again(make_casino: CasinoFactory) -> None:
    """A payment the CMS still does not answer is parked again: not finished, still open."""
    casino = make_casino()
    payment_id = parked(casino)
    casino.fault(path=f"{FUNDINGS}*", action="drop", times=10_000)
    casino.clock.advance(60)
    assert recover(casino) == {"finished": 0, "open": 1}
    body = record(casino, payment_id)
    assert body["status"] == "FUNDING" and kinds(body).count("PARKED") == 2


def test_a_payment_is_given_up_on_its_own_last_request_not_another_s(
        make_casino: CasinoFactory) -> None:
    """Giving up needs this payment's last request to be older than the lease; another
    payment's request sent a moment ago must not keep an old one open."""
    casino = make_casino()
    casino.fault(method="POST", path=FUNDINGS, action="status", status=503, times=10_000)
    old = casino.pay(casino.show_qr(), username=unique_user())
    casino.clock.advance(casino.ctx.settings.tpas_give_up_after_s)
    fresh = casino.pay(casino.issue_qr("EGM-001"), username=unique_user())  # sends now
    assert (old.status, fresh.status) == ("FUNDING", "FUNDING")

    assert recover(casino) == {"finished": 1, "open": 1}  # the fresh one is still leased
    body = record(casino, old.payment_id)
    assert (body["status"], body["reason"]) == ("FAILED_VOIDED", "CMS_UNREACHABLE")
    assert casino.status(fresh.payment_id).status == "FUNDING"


def test_a_broken_partner_adapter_stops_neither_the_pass_nor_another_merchant(
        make_casino: CasinoFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """One merchant's broken adapter fails its own payment; the pass goes on and carries
    the next payment on through *that* payment's merchant's CMS."""
    casino = two_merchants(make_casino)
    broken = pay_other(casino)  # the older one: the pass meets it first
    code = casino.show_qr()
    ours = crash_at_funding(casino, code, monkeypatch)
    casino.clock.advance(casino.ctx.settings.tpas_lease_s)

    assert recover(casino) == {"finished": 1, "open": 1}
    credited = record(casino, ours)
    assert (credited["status"], credited["creditMeter"]) == ("CREDITED", 2000)
    assert casino.meter() == 2000
    assert record(casino, broken)["status"] == "AUTHORIZED"
    assert [f["transactionId"] for f in casino.cms_fundings()] == [credited["transactionId"]]


def test_a_sweep_lane_takes_only_its_own_merchants_payments(make_casino: CasinoFactory) -> None:
    """A lane carries its CMS's merchants' payments only: the broken CMS's older payment,
    its lane backing off, must not end the live CMS's lane before its payment."""
    casino = two_merchants(make_casino)
    broken = pay_other(casino)
    casino.clock.advance(casino.ctx.settings.tpas_lease_s)
    sweeper = RecoverySweeper(casino.ctx, concurrency=1)
    try:
        assert sweeper.tick() == 1  # the broken CMS's lane: it fails and backs off an hour
        settle(sweeper)
        ours = parked(casino)
        casino.clock.advance(casino.ctx.settings.tpas_lease_s)  # both are due again
        assert sweeper.tick() == 1  # only the live CMS's lane
        settle(sweeper)
    finally:
        sweeper.stop(5)
    assert casino.status(ours).status == "CREDITED"
    assert casino.meter() == 2000
    assert record(casino, broken)["status"] == "AUTHORIZED"


def left_in_bank_step(casino: Casino, monkeypatch: pytest.MonkeyPatch, count: int) -> list[str]:
    """`count` payments whose process died during the bank step (CREATED, leased for the
    bank's longest delay), made now; their ids."""
    def died(*args: object) -> None:
        raise RuntimeError("process died")

    codes = [casino.issue_qr(EGM) for _ in range(count)]
    with monkeypatch.context() as patch:
        patch.setattr(demo_bank, "authorize", died)
        for code in codes:
            with pytest.raises(RuntimeError):
                casino.pay(code, username=unique_user())
    by_code = {p["qrCode"]: p["paymentId"] for p in listed(casino, "CREATED")}
    return [by_code[code] for code in codes]


def listed(casino: Casino, status: str) -> list[dict[str, Any]]:
    """`GET /_sim/payments?status=`: the payments in `status`."""
    response = casino.trustly.get("/_sim/payments", query_string={"status": status},
                                  headers=ADMIN)
    assert response.status_code == 200, response.get_data(as_text=True)
    found: list[dict[str, Any]] = response.get_json()["payments"]
    return found


def past_the_bank_leases(casino: Casino) -> None:
    casino.clock.advance(casino.ctx.settings.tpas_stale_after_s + demo_bank.MAX_SLEEP_S + 60)


def test_a_pass_takes_at_most_500_payments_the_oldest_first(
        make_casino: CasinoFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """One pass is bounded (500 payments) and starts with the oldest, even one stored after
    younger ones (another worker's slow commit); the next pass takes the rest."""
    casino = make_casino()
    casino.clock.advance(10)
    younger = left_in_bank_step(casino, monkeypatch, BATCH)
    casino.clock.set(START)
    (oldest,) = left_in_bank_step(casino, monkeypatch, 1)
    past_the_bank_leases(casino)

    assert recover(casino) == {"finished": BATCH, "open": 1}
    assert record(casino, oldest)["status"] == "FAILED_VOIDED"
    (left,) = listed(casino, "CREATED")
    assert left["paymentId"] in younger
    assert recover(casino) == {"finished": 1, "open": 0}


def test_a_lane_takes_its_500_oldest_due_payments_whatever_its_merchant_finished_before(
        make_casino: CasinoFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A merchant's finished payments never fill a lane's list: it takes the 500 oldest
    payments that are due (the oldest first, even one stored after younger ones) and
    leaves the rest to the next tick."""
    casino = make_casino()
    code = casino.show_qr()
    for _ in range(BATCH):  # refused at the bank, the code handed back each time
        assert casino.pay(code, password="NotEnoughFunds").status == "FAILED_VOIDED"
    casino.clock.advance(20)
    younger = left_in_bank_step(casino, monkeypatch, BATCH)
    casino.clock.set(START + timedelta(seconds=10))
    (oldest,) = left_in_bank_step(casino, monkeypatch, 1)
    past_the_bank_leases(casino)

    sweeper = RecoverySweeper(casino.ctx, concurrency=1)
    try:
        assert sweeper.tick() == 1
        settle(sweeper)
        assert len(listed(casino, "FAILED_VOIDED")) == 2 * BATCH
        oldest_now = record(casino, oldest)
        assert (oldest_now["status"], oldest_now.get("reason")) == (
            "FAILED_VOIDED", "BANK_INCOMPLETE")
        (left,) = listed(casino, "CREATED")
        assert left["paymentId"] in younger
        assert sweeper.tick() == 1
        settle(sweeper)
    finally:
        sweeper.stop(5)
    assert listed(casino, "CREATED") == []
