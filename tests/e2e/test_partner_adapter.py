"""A merchant whose CMS has a different API shape, reached through a custom adapter.

sim_trustly is configured from TOML the way an operator would: the merchant's partner
profile lives in its own file and names `adapter = "tests.e2e.partner_adapter:PartnerAdapter"`.
The partner's CMS (`partner_cms_app`, other paths, other field names, API-key auth) is served
in-process through the app's `cms_transport`. The adapter is driven through `adapter_for`,
and a whole payment goes through TPAS (`pay_with_qr`) to the partner's machine.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from flask import Flask

from sim_trustly.app import create_app
from sim_trustly.cms_client.adapters import adapter_for
from sim_trustly.cms_client.protocol import CmsAdapter, FundingCall, FundingResult
from sim_trustly.context import TrustlyContext
from sim_trustly.microsite.demo_bank import ubai_for
from sim_trustly.settings import load_trustly_settings
from sim_trustly.tpas import state_machine
from simkit.clock import ManualClock
from simkit.money import MinorUnits
from tests.conftest import DatabaseFactory
from tests.e2e.partner_adapter import PartnerAdapter
from tests.e2e.partner_cms_app import API_KEY, PartnerState, create_partner_app

pytestmark = pytest.mark.db

MERCHANT = "partner-casino"
ACCESS = ("partner-access-id", "partner-access-key-0001")
CONFIG = f"""
[[trustly.merchants]]
merchant_id = "demo-merchant"
access_id = "demo-access-id"
access_key = "demo-access-key"

[[trustly.merchants]]
merchant_id = "{MERCHANT}"
name = "Partner Casino"
access_id = "{ACCESS[0]}"
access_key = "{ACCESS[1]}"

[trustly.cms_profiles.{MERCHANT}]
profile_file = "partners/partner-casino.toml"
"""
PROFILE = f"""
base_url = "http://partner-cms.test"
adapter = "tests.e2e.partner_adapter:PartnerAdapter"
read_timeout_s = 3
auth = {{ kind = "api_key", header = "X-Partner-Key", key = "{API_KEY}" }}
retries = {{ max_attempts = 3, backoff_base_s = 0.1, backoff_cap_s = 0.5 }}

[paths]
fundings = "/api/credits"
funding_status = "/api/credits/{{transactionId}}"
limits = "/api/players/{{ubai}}/allowance"
"""


@pytest.fixture
def partner() -> Flask:
    return create_partner_app()


@pytest.fixture
def trustly(tmp_path: Path, databases: DatabaseFactory, clock: ManualClock,
            partner: Flask) -> Iterator[Flask]:
    (tmp_path / "partners").mkdir()
    (tmp_path / "partners" / "partner-casino.toml").write_text(PROFILE, encoding="utf-8")
    (tmp_path / "scanpay.toml").write_text(CONFIG, encoding="utf-8")
    settings = load_trustly_settings(
        environ={"SCANPAY_TRUSTLY_DATABASE_URL": databases.new("trustly")},
        config_path=tmp_path / "scanpay.toml")
    app = create_app(settings, clock=clock, cms_transport=httpx.WSGITransport(app=partner))
    app.testing = True
    yield app
    app.extensions["sim_trustly"].close()


@pytest.fixture
def ctx(trustly: Flask) -> TrustlyContext:
    context: TrustlyContext = trustly.extensions["sim_trustly"]
    return context


@pytest.fixture
def adapter(ctx: TrustlyContext) -> CmsAdapter:
    return adapter_for(ctx, MERCHANT)


def state(partner: Flask) -> PartnerState:
    partner_state: PartnerState = partner.extensions["partner"]
    return partner_state


def credit(ref: str = "ref-1", machine: str = "SLOT-1", cents: int = 2000,
           currency: str = "USD") -> FundingCall:
    return FundingCall(transaction_id=ref, egm_id=machine, amount=MinorUnits(cents),
                       currency=currency, ubai="player-7", qr_token_id="qr-1")


def test_the_merchants_profile_selects_the_partner_adapter(ctx: TrustlyContext,
                                                           adapter: CmsAdapter) -> None:
    assert isinstance(adapter, PartnerAdapter)
    assert adapter_for(ctx, MERCHANT) is adapter
    assert not isinstance(adapter_for(ctx, "demo-merchant"), PartnerAdapter)


def test_partner_credit_is_applied_once_and_found_by_inquiry(adapter: CmsAdapter,
                                                            partner: Flask) -> None:
    assert adapter.post_funding(credit()) == FundingResult("APPLIED", http_status=200,
                                                           credit_meter=2000)
    again = adapter.post_funding(credit())
    assert (again.outcome, again.detail) == ("APPLIED", "duplicate")
    assert adapter.get_funding("ref-1").outcome == "APPLIED"
    assert state(partner).machines["SLOT-1"] == 2000


@pytest.mark.parametrize(("call", "code"), [
    (credit(machine="SLOT-9"), "EGM_OFFLINE"),
    (credit(machine="SLOT-404"), "EGM_NOT_FOUND"),
    (credit(cents=50_001), "DAILY_LIMIT_EXCEEDED"),
    (credit(currency="EUR"), "INVALID_AMOUNT"),
])
def test_partner_declines_become_rejections_in_reference_codes(
    adapter: CmsAdapter, partner: Flask, call: FundingCall, code: str,
) -> None:
    result = adapter.post_funding(call)
    assert (result.outcome, result.code) == ("REJECTED", code)
    assert sum(state(partner).machines.values()) == 0


def test_inquiry_tells_declined_from_never_seen(adapter: CmsAdapter) -> None:
    adapter.post_funding(credit("ref-down", machine="SLOT-9"))
    assert (adapter.get_funding("ref-down").outcome,
            adapter.get_funding("ref-down").code) == ("REJECTED", "EGM_OFFLINE")
    assert adapter.get_funding("ref-never").outcome == "NOT_FOUND"


def test_partner_allowance_is_the_limit(adapter: CmsAdapter) -> None:
    adapter.post_funding(credit(cents=5000))
    limit = adapter.get_limit("player-7")
    assert (limit.outcome, limit.remaining) == ("OK", 45_000)


def test_a_refused_api_key_is_unknown_not_rejected(ctx: TrustlyContext) -> None:
    profile = ctx.settings.cms_profiles[MERCHANT]
    wrong = dataclasses.replace(profile, auth=dataclasses.replace(profile.auth, key="nope"))
    result = PartnerAdapter(wrong, ctx.cms_transport).post_funding(credit())
    assert (result.outcome, result.http_status) == ("UNKNOWN", 401)


def qr_code_for(trustly: Flask, egm_id: str) -> str:
    """Issue a QR token for the partner's machine; the code its scan URL carries."""
    auth = "Basic " + base64.b64encode(":".join(ACCESS).encode()).decode()
    response = trustly.test_client().post(
        "/auth-service/api/oauth2/qrcode/token", headers={"Authorization": auth},
        json={"merchantId": MERCHANT, "egmId": egm_id})
    assert response.status_code == 200, response.get_data(as_text=True)
    url: str = response.get_json()["url"]
    return urlsplit(url).path.rsplit("/", 1)[-1]


def test_a_scanned_payment_credits_the_partners_machine(trustly: Flask, ctx: TrustlyContext,
                                                        partner: Flask) -> None:
    request = state_machine.PaymentRequest(amount=MinorUnits(2000), currency="USD",
                                           username="alice", password="pw")
    view = state_machine.pay_with_qr(ctx, qr_code_for(trustly, "SLOT-1"), request)
    assert (view.status, view.credit_meter) == ("CREDITED", 2000)
    assert state(partner).machines["SLOT-1"] == 2000
    assert state(partner).spent == {ubai_for("alice"): 2000}


def test_a_payment_to_a_machine_that_is_down_is_voided(trustly: Flask, ctx: TrustlyContext,
                                                       partner: Flask) -> None:
    request = state_machine.PaymentRequest(amount=MinorUnits(2000), currency="USD",
                                           username="bob", password="pw")
    view = state_machine.pay_with_qr(ctx, qr_code_for(trustly, "SLOT-9"), request)
    assert (view.status, view.reason) == ("REJECTED_VOIDED", "EGM_OFFLINE")
    assert sum(state(partner).machines.values()) == 0
