"""A casino for TPAS tests: sim_trustly and the reference sim_cms wired together in-process.

The CMS acquires each QR from Trustly itself, so the code a test pays with was displayed on
that EGM. TPAS reaches the CMS through an httpx WSGI transport, or (`over_http=True`) over a
real socket on 127.0.0.1, which is what read timeouts and dropped connections need.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import BaseWSGIServer, make_server

from sim_cms.app import MIGRATIONS as CMS_MIGRATIONS
from sim_cms.app import create_app as create_cms
from sim_cms.settings import CmsSettings
from sim_trustly.app import MIGRATIONS as TRUSTLY_MIGRATIONS
from sim_trustly.app import create_app as create_trustly
from sim_trustly.cms_client.partner_profiles import DEFAULT_CMS_PROFILE
from sim_trustly.context import TrustlyContext
from sim_trustly.microsite.demo_bank import ubai_for
from sim_trustly.settings import TrustlySettings
from sim_trustly.tpas import payments, state_machine
from sim_trustly.tpas.reconciliation import reconcile_service
from simkit.clock import ManualClock
from simkit.money import MinorUnits
from tests.conftest import (
    ADMIN_TOKEN,
    START,
    DatabaseFactory,
    LateWSGITransport,
    basic,
    cms_bearer,
    cms_test_clients,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EGM = "EGM-001"
DEMO_AUTH = basic("demo-access-id", "demo-access-key")


class _LateApp:
    """A WSGI app that forwards to an app set later (the server must exist before the CMS)."""

    app: Flask | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)


@dataclass
class Casino:
    """Both sims, their test clients, and the moves a TPAS test makes."""

    trustly_app: Flask
    cms_app: Flask
    clock: ManualClock
    cms_clock: ManualClock
    trustly: FlaskClient = field(init=False)
    cms: FlaskClient = field(init=False)
    bearer: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.trustly = self.trustly_app.test_client()
        self.cms = self.cms_app.test_client()
        self.bearer = cms_bearer(self.cms)

    @property
    def ctx(self) -> TrustlyContext:
        """sim_trustly's context, for calling TPAS's service functions directly."""
        context: TrustlyContext = self.trustly_app.extensions["sim_trustly"]
        return context

    def show_qr(self, egm_id: str = EGM) -> str:
        """Make the CMS acquire and display a QR on `egm_id`; the code in its URL."""
        response = self.cms.post(f"/cws/v1/egms/{egm_id}/qr", headers=self.bearer)
        assert response.status_code == 200, response.get_data(as_text=True)
        return str(response.get_json()["url"]).rsplit("/", 1)[-1]

    def issue_qr(self, egm_id: str) -> str:
        """A QR token straight from Trustly's QR Code API (never displayed by the CMS)."""
        response = self.trustly.post("/auth-service/api/oauth2/qrcode/token",
                                     json={"merchantId": "demo-merchant", "egmId": egm_id},
                                     headers={"Authorization": DEMO_AUTH})
        assert response.status_code == 200, response.get_data(as_text=True)
        return str(response.get_json()["url"]).rsplit("/", 1)[-1]

    def pay(self, code: str, amount: int = 2000, *, username: str = "alice",
            password: str = "pw", currency: str = "USD") -> payments.PaymentView:
        """What the phone's approve button does: pay with the scanned code."""
        request = state_machine.PaymentRequest(MinorUnits(amount), currency, username, password)
        return state_machine.pay_with_qr(self.ctx, code, request)

    def meter(self, egm_id: str = EGM) -> int:
        """The EGM's credit meter as the CMS reports it."""
        response = self.cms.get(f"/_sim/egms/{egm_id}", headers=ADMIN)
        assert response.status_code == 200, response.get_data(as_text=True)
        return int(response.get_json()["creditMeter"])

    def change_egm(self, egm_id: str = EGM, **change: Any) -> None:
        """Change an EGM's state or credit limit through the CMS control API."""
        response = self.cms.post(f"/_sim/egms/{egm_id}", json=change, headers=ADMIN)
        assert response.status_code == 200, response.get_data(as_text=True)

    def limit(self, username: str) -> dict[str, Any]:
        """The CMS's daily-limit view of the bank account `username` logs into."""
        response = self.cms.get(f"/cws/v1/limits/{ubai_for(username)}", headers=self.bearer)
        assert response.status_code == 200, response.get_data(as_text=True)
        view: dict[str, Any] = response.get_json()
        return view

    def set_limit(self, username: str, daily_limit: int) -> None:
        """Set the daily limit of `username`'s bank account at the CMS."""
        response = self.cms.put(f"/cws/v1/limits/{ubai_for(username)}", headers=self.bearer,
                                json={"dailyLimit": daily_limit})
        assert response.status_code in (200, 201), response.get_data(as_text=True)

    def fault(self, **rule: Any) -> None:
        """Declare a fault rule on the CMS."""
        response = self.cms.post("/_sim/faults", json=rule, headers=ADMIN)
        assert response.status_code == 201, response.get_data(as_text=True)

    def clear_faults(self) -> None:
        """Let the CMS answer normally again."""
        assert self.cms.delete("/_sim/faults", headers=ADMIN).status_code == 200

    def cms_fundings(self) -> list[dict[str, Any]]:
        """Every funding the CMS decided."""
        response = self.cms.get("/_sim/fundings", headers=ADMIN)
        assert response.status_code == 200, response.get_data(as_text=True)
        fundings: list[dict[str, Any]] = response.get_json()["fundings"]
        return fundings

    def ledger(self) -> dict[str, Any]:
        """The CMS ledger's counts, applied total and balance check."""
        ledger: dict[str, Any] = self.cms.get("/_sim/state", headers=ADMIN).get_json()["ledger"]
        return ledger

    def reconciliation(self) -> dict[str, Any]:
        """TPAS's reconciliation against the CMS."""
        return reconcile_service(self.ctx)

    def events(self, payment_id: str) -> list[str]:
        """The kinds of a payment's events, oldest first."""
        return [event["kind"] for event in payments.events_json(self.ctx.db, payment_id)]

    def status(self, payment_id: str) -> payments.PaymentView:
        """The payment as TPAS stores it now."""
        return state_machine.get_payment(self.ctx, payment_id)


CasinoFactory = Callable[..., Casino]


@pytest.fixture
def make_casino(databases: DatabaseFactory, clock: ManualClock) -> Iterator[CasinoFactory]:
    """Build a casino; keyword args override TrustlySettings (`read_timeout_s` the CMS
    profile's), `over_http` serves the CMS on a socket, `own_cms_clock` gives the CMS a clock
    of its own (to expire its tokens without TPAS noticing)."""
    built: list[Casino] = []
    servers: list[BaseWSGIServer] = []

    def build(*, over_http: bool = False, own_cms_clock: bool = False,
              read_timeout_s: float = 5.0, **overrides: Any) -> Casino:
        cms_clock = ManualClock(start=START) if own_cms_clock else clock
        late, transport, base_url = _LateApp(), LateWSGITransport(), "http://cms.invalid"
        if over_http:
            server = make_server("127.0.0.1", 0, late, threaded=True)
            servers.append(server)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            base_url = f"http://127.0.0.1:{server.server_port}"
        profile = replace(DEFAULT_CMS_PROFILE, base_url=base_url, read_timeout_s=read_timeout_s)
        trustly_url = databases.migrated(TRUSTLY_MIGRATIONS, "trustly")
        settings = TrustlySettings(**{"database_url": trustly_url,
                                      "admin_token": ADMIN_TOKEN, "cms": profile, **overrides})
        trustly_app = create_trustly(settings, clock=clock,
                                     cms_transport=None if over_http else transport)
        cms_settings = CmsSettings(database_url=databases.migrated(CMS_MIGRATIONS, "cms"),
                                   admin_token=ADMIN_TOKEN, clients=cms_test_clients())
        cms_app = create_cms(cms_settings, clock=cms_clock,
                             trustly_transport=httpx.WSGITransport(app=trustly_app))
        late.app = transport.app = cms_app
        trustly_app.testing = cms_app.testing = True
        casino = Casino(trustly_app, cms_app, clock, cms_clock)
        built.append(casino)
        return casino

    yield build
    for server in servers:
        server.shutdown()
    for casino in built:
        casino.ctx.close()
        casino.cms_app.extensions["sim_cms"].close()


def unique_user() -> str:
    """A demo-bank username no other payment in the test uses (its own UBAI and limit)."""
    return f"player-{uuid.uuid4().hex[:8]}"


def replace_signing_key(casino: Casino) -> None:
    """Add a new signing key and remove the one every token so far was signed with."""
    old_kid = casino.trustly.get("/_sim/signing-keys", headers=ADMIN).get_json()["keys"][0]["kid"]
    assert casino.trustly.post("/_sim/signing-keys", json={"kid": "next"},
                               headers=ADMIN).status_code == 201
    assert casino.trustly.delete(f"/_sim/signing-keys/{old_kid}", headers=ADMIN).status_code == 200
