"""A CMS vendor's Scan and Pay integration tests, on the scanpay pytest plugin.

This file is all a partner needs next to an installed scanpay-sim (see README.md here):

    pytest test_partner_cms.py                                          # the embedded sims
    pytest test_partner_cms.py --scanpay-target partner-target.toml     # your CMS

Against your CMS the harness runs its own simulated Trustly and plays the EGM and the
player's phone. Tests call your CMS the way docs/partner-contract.md says: the Funding API
directly (as TPAS), the EGM calls of `[cms.egm]`, and the control hooks your target file
declares (a test whose hook you do not offer is skipped, with the reason).
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.plugin.kit import CleanState, CmsApi, FlowDriver
from harness.plugin.strategies import malformed_funding_bodies, malformed_limit_bodies
from harness.targets import Target

# Each example is a real HTTP request to the CMS: keep the count bounded for CI, and print
# the seed on failure so the run can be repeated.
CI_EXAMPLES = settings(max_examples=25, deadline=None, print_blob=True)


def test_scan_then_pay_credits_the_meter_once(scanpay_flow: FlowDriver) -> None:
    run = scanpay_flow.run(amount=2500)

    assert run.error is None, run.error
    assert run.status == "CREDITED"
    assert run.meter_before is not None and run.meter_after is not None
    assert run.meter_after - run.meter_before == 2500
    # Read again later, the meter shows that one credit and nothing more.
    assert scanpay_flow.meter(run.egm_id) == run.meter_after


def test_replayed_qr_is_refused_and_credits_nothing(scanpay_flow: FlowDriver) -> None:
    run = scanpay_flow.run(amount=1000)
    assert run.status == "CREDITED"

    replay = scanpay_flow.pay_again(run)

    assert replay.status_code == 409, replay.text  # QR_CODE_USED: one payment per QR, ever
    assert scanpay_flow.meter(run.egm_id) == run.meter_after


def test_payment_over_the_daily_limit_is_refused_and_voided(
    scanpay_flow: FlowDriver, scanpay_cms: CmsApi, scanpay_clean: CleanState,
) -> None:
    limit = scanpay_cms.put_limit(scanpay_clean.ubai, {"dailyLimit": 1500})
    assert limit.status_code in (200, 201), limit.text  # updated, or created

    run = scanpay_flow.run(amount=2000)

    assert run.status == "REJECTED_VOIDED"
    assert run.reason == "DAILY_LIMIT_EXCEEDED"
    assert run.meter_after == run.meter_before


# `scanpay_flow` is made once per test, not once per example, so Hypothesis warns that the
# examples share it (HealthCheck.function_scoped_fixture). That is safe here because each
# example pays as a player of its own: no daily limit or meter comparison is shared.
@settings(max_examples=5, deadline=None, print_blob=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amount=st.integers(min_value=100, max_value=5000))
def test_any_amount_is_credited_exactly_once(scanpay_flow: FlowDriver, amount: int) -> None:
    run = scanpay_flow.run(amount=amount, username=scanpay_flow.clean.new_username())

    assert run.credited, (run.status, run.reason, run.error)
    assert run.meter_before is not None and run.meter_after is not None
    assert run.meter_after - run.meter_before == amount


@CI_EXAMPLES
@given(data=st.data())
def test_malformed_funding_bodies_get_4xx_never_5xx(
    scanpay_cms: CmsApi, scanpay_target: Target, data: st.DataObject,
) -> None:
    body = data.draw(malformed_funding_bodies(egm_id=scanpay_target.egm_ids[0]), label="body")

    response = scanpay_cms.post_funding(body)

    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])


@CI_EXAMPLES
@given(body=malformed_limit_bodies())
def test_malformed_limit_bodies_get_4xx_never_5xx(scanpay_cms: CmsApi, body: object) -> None:
    response = scanpay_cms.put_limit("ubai-partner-ci-check", body)

    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])


def _show_qr(target: Target, cms: CmsApi, egm_id: str) -> dict[str, Any]:
    """Make the EGM show a fresh QR (`[cms.egm] acquire_qr`) and return it."""
    if target.egm_paths.acquire_qr is None:
        pytest.skip("the target names no cms.egm.acquire_qr path")
    shown = cms.call("POST", target.egm_paths.of(target.egm_paths.acquire_qr, egm_id),
                     as_egm=True)
    assert shown.status_code == 200, shown.text
    qr: dict[str, Any] = shown.json()
    qr.setdefault("qrTokenId", qr["url"].rstrip("/").rpartition("/")[2])
    return qr


def _funding(target: Target, cms: CmsApi, flow: FlowDriver, clean: CleanState,
             amount: int) -> dict[str, Any]:
    """A Funding API body as TPAS sends it: a new transactionId, a QR the EGM shows."""
    egm_id = flow.default_egm
    return {"transactionId": f"ci-{uuid.uuid4().hex}", "egmId": egm_id, "amount": amount,
            "currency": str(flow.egm(egm_id).get("currency", "USD")), "ubai": clean.ubai,
            "qrTokenId": _show_qr(target, cms, egm_id)["qrTokenId"]}


def test_a_funding_delivered_twice_is_applied_once(
    scanpay_target: Target, scanpay_cms: CmsApi, scanpay_flow: FlowDriver,
    scanpay_clean: CleanState,
) -> None:
    body = _funding(scanpay_target, scanpay_cms, scanpay_flow, scanpay_clean, 1200)
    before = scanpay_flow.meter(body["egmId"])

    first = scanpay_cms.post_funding(body)
    again = scanpay_cms.post_funding(body)  # TPAS resends when an answer is lost

    assert first.status_code == 201, first.text
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert scanpay_flow.meter(body["egmId"]) - before == 1200
    status = scanpay_cms.get_funding(body["transactionId"])
    assert status.status_code == 200 and status.json()["status"] == "APPLIED", status.text


def test_identical_fundings_at_once_credit_the_meter_once(
    scanpay_target: Target, scanpay_cms: CmsApi, scanpay_flow: FlowDriver,
    scanpay_clean: CleanState,
) -> None:
    """The most expensive defect: a replay check made before the lock credits every copy."""
    body = _funding(scanpay_target, scanpay_cms, scanpay_flow, scanpay_clean, 700)
    before = scanpay_flow.meter(body["egmId"])
    copies = 8
    barrier = threading.Barrier(copies)

    def send(_: int) -> httpx.Response:
        barrier.wait(timeout=30)
        return scanpay_cms.post_funding(body)

    with ThreadPoolExecutor(max_workers=copies) as pool:
        answers = list(pool.map(send, range(copies)))

    assert scanpay_flow.meter(body["egmId"]) - before == 700  # once, not 8 times
    assert {a.status_code for a in answers} <= {201, 409}, [a.text[:200] for a in answers]


def test_the_status_inquiry_of_an_unknown_funding_is_404(scanpay_cms: CmsApi) -> None:
    answer = scanpay_cms.get_funding(f"ci-never-sent-{uuid.uuid4().hex}")

    assert answer.status_code == 404, answer.text  # never applied: TPAS may safely resend


def test_egm_in_a_game_refuses_credit_and_the_payment_is_voided(
    scanpay_target: Target, scanpay_flow: FlowDriver,
) -> None:
    control = scanpay_target.cms_control
    if control is None or not scanpay_target.has("egm-state"):
        pytest.skip("the target does not offer the egm-state hook")
    egm_id = scanpay_flow.default_egm
    changed = control.call("POST", f"/_sim/egms/{egm_id}", json={"state": "IN_GAME"})
    assert changed.status_code == 200, changed.text
    try:
        run = scanpay_flow.run(egm_id=egm_id, amount=2000)
    finally:
        control.call("POST", f"/_sim/egms/{egm_id}", json={"state": "IDLE"})

    assert run.status == "REJECTED_VOIDED"
    assert run.reason == "EGM_BUSY"
    assert run.meter_after == run.meter_before


@pytest.mark.sim_only(reason="reads the simulators' own ledger dump")
def test_the_reference_ledger_balances_after_a_payment(
    scanpay_sims: Target, scanpay_flow: FlowDriver,
) -> None:
    assert scanpay_flow.run(amount=900).status == "CREDITED"
    assert scanpay_sims.cms_control is not None

    state = scanpay_sims.cms_control.call("GET", "/_sim/state").json()

    assert state["ledger"]["balanced"] is True
