"""Locust journeys against the two sims: the casino floor (players at EGMs, partner ops),
and two single journeys (a CMS asking Trustly for QR tokens; one scan-then-pay).

    locust -f loadtests/locustfile.py --headless -u 20 -r 5 -t 1m \\
        --host http://127.0.0.1:8710 --cms-url http://127.0.0.1:8720 --admin-token T \\
        PlayerUser PartnerOpsUser

`--host` is sim_trustly (the phone's and the CMS's counterpart); `--cms-url` is the CMS the
EGMs talk to. Both can come from the environment (`SCANPAY_LOAD_TRUSTLY_URL`,
`SCANPAY_LOAD_CMS_URL`), which is how docker-compose's `load` profile wires them. The business
gates (reconciliation, error share, p95 per step) run when the test stops and set the exit
code; loadtests/README.md lists every option and says how to run distributed.

The modules beside this file (base, floor, gates, live, hooks) import nothing from the
project, so a load machine can run them from a checkout with `pip install locust` alone.
"""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

import hooks  # noqa: F401 - registers the options, the reach check, the live line and gates
from base import CORRELATION_HEADER, ScanPayUser
from floor import PartnerOpsUser, PlayerUser, qr_code_of
from locust import task

__all__ = ["CmsQrTokenUser", "PartnerOpsUser", "PlayerUser", "ScanThenPayUser"]
# Journeys started by this process, so that concurrent users spread over the EGMs.
_journey_numbers = itertools.count()


class SeededEgmUser(ScanPayUser):
    """A journey over the existing EGMs of `--egms`, round robin."""

    abstract = True

    def on_start(self) -> None:
        """Read the options; refuse an empty EGM list."""
        super().on_start()
        if not self.settings.egms:
            raise ValueError("--egms names no EGM")

    def next_egm(self) -> str:
        """The EGM of this process's next journey, round robin over `--egms`."""
        return self.settings.egms[next(_journey_numbers) % len(self.settings.egms)]


class CmsQrTokenUser(SeededEgmUser):
    """A CMS asking Trustly's QR Code API for tokens (HTTP Basic), as its rotator does."""

    weight = 1

    @task
    def qr_token(self) -> None:
        """`POST /auth-service/api/oauth2/qrcode/token` for the next EGM."""
        s = self.settings
        with self.client.post(f"{s.trustly_url}/auth-service/api/oauth2/qrcode/token",
                              json={"merchantId": s.merchant_id, "egmId": self.next_egm()},
                              auth=(s.access_id, s.access_key),
                              name="CMS->Trustly POST /auth-service/api/oauth2/qrcode/token",
                              catch_response=True) as response:
            self.expect(response, 200, keys=("url", "token", "expiresAt"))


class ScanThenPayUser(SeededEgmUser):
    """A player funding an EGM: the EGM gets a QR from its CMS, the phone scans it and pays.

    The EGM holds one OAuth2 token and fetches a new one when the CMS answers 401 (expiry).
    Every payment uses a new demo-bank username, so the daily limit (per bank account) never
    stops a journey; a small amount keeps the EGMs' credit meters under their caps.
    """

    weight = 3
    token: str | None = None

    def acquire_qr(self, egm_id: str, headers: dict[str, str]) -> str | None:
        """The QR url the CMS got from Trustly for the EGM (one retry with a fresh token)."""
        body = self.cms_call("POST", f"{self.settings.cms_url}/cws/v1/egms/{egm_id}/qr",
                             "EGM->CMS POST /cws/v1/egms/[egm]/qr", ("url",), headers=headers)
        return str(body["url"]) if body else None

    @task
    def scan_then_pay(self) -> None:
        """QR from the CMS, scan and pay at Trustly, wait for a definite outcome."""
        headers = {CORRELATION_HEADER: f"load-{uuid.uuid4().hex}"}
        started = time.perf_counter()
        url = self.acquire_qr(self.next_egm(), headers)
        if url is None:
            return
        # The code, not the url: the url names Trustly as phones reach it, which from a load
        # generator (e.g. inside docker-compose) may be another address than --host.
        code = qr_code_of(url)
        api = f"{self.settings.trustly_url}/api/v1"
        if self.scan_code(code, headers) is not None:
            self.record(self.pay(api, code, headers), started)

    def pay(self, api: str, code: str, headers: dict[str, str]) -> dict[str, Any] | None:
        """Pay at the demo bank; poll a payment answered 202 until it settles."""
        s = self.settings
        body = {"amount": s.amount, "currency": s.currency,
                "bank": {"username": f"load-{uuid.uuid4().hex[:16]}", "password": "load"}}
        return self.pay_and_settle(api, code, body, headers)

    def record(self, payment: dict[str, Any] | None, started: float) -> None:
        """Count the whole journey as one entry (its time from QR to settled payment),
        failed unless the payment ended CREDITED: the figure a casino cares about."""
        if payment is None:
            return  # the failed request is already counted
        status = payment["status"]
        failure = None if status == "CREDITED" else AssertionError(f"payment ended {status}")
        self.environment.events.request.fire(
            request_type="JOURNEY", name="scan-then-pay (QR to CREDITED)",
            response_time=(time.perf_counter() - started) * 1000, response_length=0,
            context={}, exception=failure)
