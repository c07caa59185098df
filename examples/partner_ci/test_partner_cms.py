"""A CMS vendor's Scan and Pay integration tests, on the scanpay pytest plugin.

This file is all a partner needs next to `pip install scanpay-sim`:

    pytest test_partner_cms.py                                          # the embedded sims
    pytest test_partner_cms.py --scanpay-target partner-target.toml     # your CMS

Against your CMS the harness runs its own simulated Trustly and plays the EGM and the
player's phone; tests marked `sim_only` are skipped there, with the reason.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.plugin_kit import CleanState, CmsApi, FlowDriver
from harness.strategies import malformed_funding_bodies, malformed_limit_bodies
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


@pytest.mark.sim_only(reason="puts an EGM into a game through the simulator's control API")
def test_egm_in_a_game_refuses_credit_and_the_payment_is_voided(
    scanpay_sims: Target, scanpay_flow: FlowDriver,
) -> None:
    assert scanpay_sims.cms_control is not None
    egm_id = scanpay_flow.default_egm
    changed = scanpay_sims.cms_control.call("POST", f"/_sim/egms/{egm_id}",
                                            json={"state": "IN_GAME"})
    assert changed.status_code == 200, changed.text

    run = scanpay_flow.run(egm_id=egm_id, amount=2000)

    assert run.status == "REJECTED_VOIDED"
    assert run.reason == "EGM_BUSY"
    assert run.meter_after == run.meter_before
