"""A casino floor for microsite and payments-API tests: sim_trustly and sim_cms wired together.

The CMS acquires each QR itself (as on a real floor), so the code a test pays with was really
displayed on that EGM and the CMS's QR_TOKEN_MISMATCH check passes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete

from sim_trustly.microsite.demo_bank import ubai_for
from sim_trustly.models import Credential, Merchant
from tests.conftest import ADMIN_TOKEN, cms_bearer

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EGM = "EGM-001"


class Floor:
    """Test clients of both sims and the few moves a test makes on the casino floor."""

    def __init__(self, trustly: Flask, cms: Flask) -> None:
        self.trustly_app = trustly
        self.trustly: FlaskClient = trustly.test_client()
        self.cms: FlaskClient = cms.test_client()
        self.bearer = cms_bearer(self.cms)

    def show_qr(self, egm_id: str = EGM) -> str:
        """Make the CMS acquire and show a QR on `egm_id`; the code its URL carries."""
        response = self.cms.post(f"/cws/v1/egms/{egm_id}/qr", headers=self.bearer)
        assert response.status_code == 200, response.get_data(as_text=True)
        url: str = response.get_json()["url"]
        return urlsplit(url).path.rsplit("/", 1)[-1]

    def meter(self, egm_id: str = EGM) -> int:
        """The EGM's credit meter as the CMS reports it."""
        response = self.cms.get(f"/_sim/egms/{egm_id}", headers=ADMIN)  # no token to expire
        assert response.status_code == 200, response.get_data(as_text=True)
        meter: int = response.get_json()["creditMeter"]
        return meter

    def set_egm_state(self, state: str, egm_id: str = EGM) -> None:
        """Put an EGM in `state` through the CMS control API."""
        response = self.cms.post(f"/_sim/egms/{egm_id}", json={"state": state}, headers=ADMIN)
        assert response.status_code == 200, response.get_data(as_text=True)

    def set_daily_limit(self, username: str, daily_limit: int) -> None:
        """Set the CMS daily limit of the demo-bank account `username` logs into."""
        response = self.cms.put(f"/cws/v1/limits/{ubai_for(username)}", headers=self.bearer,
                                json={"dailyLimit": daily_limit})
        assert response.status_code in (200, 201), response.get_data(as_text=True)

    def cms_fault(self, **rule: Any) -> None:
        """Declare a fault on the CMS (e.g. every funding call dropped)."""
        response = self.cms.post("/_sim/faults", json=rule, headers=ADMIN)
        assert response.status_code == 201, response.get_data(as_text=True)

    def forget_merchant(self, merchant_id: str = "demo-merchant") -> None:
        """Remove a merchant from Trustly, as if its contract ended after the QR was issued."""
        db = self.trustly_app.extensions["sim_trustly"].db
        with db.write() as session:
            session.execute(delete(Credential).where(Credential.merchant_id == merchant_id))
            session.execute(delete(Merchant).where(Merchant.id == merchant_id))
