"""Locust journeys against the two sims: the CMS asking Trustly for QR tokens, and the whole
scan-then-pay a player makes.

    locust -f loadtests/locustfile.py --headless -u 20 -r 5 -t 1m \\
        --host http://127.0.0.1:8710 --cms-url http://127.0.0.1:8720

`--host` is sim_trustly (the phone's and the CMS's counterpart); `--cms-url` is the CMS the
EGMs talk to. Both can come from the environment (`SCANPAY_LOAD_TRUSTLY_URL`,
`SCANPAY_LOAD_CMS_URL`), which is how docker-compose's `load` profile wires them.
loadtests/README.md says how to run it distributed and what each journey measures.

The file needs nothing but Locust (no import of the project), so a load machine can run it
from a checkout with `pip install locust` alone.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import gevent
from locust import FastHttpUser, between, events, task

CORRELATION_HEADER = "X-Correlation-Id"  # what the sims journal a request under
DEMO_EGMS = ",".join(f"EGM-{n:03d}" for n in range(1, 11))
SETTLED = frozenset({"CREDITED", "REJECTED_VOIDED", "FAILED_VOIDED"})
SETTLE_POLLS, SETTLE_POLL_S = 40, 0.25  # a payment answered 202 is polled for at most ~10 s
# Journeys started by this process, so that concurrent users spread over the EGMs.
_journey_numbers = itertools.count()


def _add_options(parser: Any, **_: Any) -> None:
    """The journeys' own options (also settable from the environment and the web UI)."""
    add = parser.add_argument
    add("--cms-url", env_var="SCANPAY_LOAD_CMS_URL", default="http://127.0.0.1:8720",
        help="Base URL of the CMS (sim_cms or a partner's). [env: SCANPAY_LOAD_CMS_URL]")
    add("--trustly-url", env_var="SCANPAY_LOAD_TRUSTLY_URL", default="",
        help="Base URL of sim_trustly; default --host. [env: SCANPAY_LOAD_TRUSTLY_URL]")
    add("--egms", env_var="SCANPAY_LOAD_EGMS", default=DEMO_EGMS,
        help="Comma-separated EGM ids to fund and to ask QR tokens for.")
    add("--amount", type=int, env_var="SCANPAY_LOAD_AMOUNT", default=100,
        help="Minor units per payment (small, so meters stay under their caps for long).")
    add("--currency", env_var="SCANPAY_LOAD_CURRENCY", default="USD")
    add("--merchant-id", env_var="SCANPAY_LOAD_MERCHANT_ID", default="demo-merchant")
    add("--access-id", env_var="SCANPAY_LOAD_ACCESS_ID", default="demo-access-id",
        help="The CMS's QR Code API credentials at Trustly (HTTP Basic).")
    add("--access-key", env_var="SCANPAY_LOAD_ACCESS_KEY", default="demo-access-key",
        is_secret=True)
    add("--client-id", env_var="SCANPAY_LOAD_CLIENT_ID", default="tpas-client",
        help="OAuth2 client the EGM uses at its CMS.")
    add("--client-secret", env_var="SCANPAY_LOAD_CLIENT_SECRET", default="tpas-secret",
        is_secret=True)


events.init_command_line_parser.add_listener(_add_options)  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class LoadSettings:
    """The options a journey reads, with the demo casino's values when Locust gave none."""

    trustly_url: str
    cms_url: str
    egms: tuple[str, ...]
    amount: int = 100
    currency: str = "USD"
    merchant_id: str = "demo-merchant"
    access_id: str = "demo-access-id"
    access_key: str = "demo-access-key"
    client_id: str = "tpas-client"
    client_secret: str = "tpas-secret"  # noqa: S105 - the published demo credential

    @classmethod
    def of(cls, options: Any, host: str) -> LoadSettings:
        """From Locust's parsed options (None when Locust runs as a library)."""
        get = (lambda name, default: getattr(options, name, default)) if options else (
            lambda name, default: os.environ.get(f"SCANPAY_LOAD_{name.upper()}", default))
        egms = tuple(e.strip() for e in str(get("egms", DEMO_EGMS)).split(",") if e.strip())
        return cls(
            trustly_url=str(get("trustly_url", "") or host).rstrip("/"),
            cms_url=str(get("cms_url", "http://127.0.0.1:8720")).rstrip("/"), egms=egms,
            amount=int(str(get("amount", 100))), currency=str(get("currency", "USD")),
            merchant_id=str(get("merchant_id", cls.merchant_id)),
            access_id=str(get("access_id", cls.access_id)),
            access_key=str(get("access_key", cls.access_key)),
            client_id=str(get("client_id", cls.client_id)),
            client_secret=str(get("client_secret", cls.client_secret)))


def _body(response: Any) -> dict[str, Any]:
    try:
        body = json.loads(response.text or "")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _problem(response: Any) -> str:
    """`HTTP 409 QR_CODE_USED` from a problem+json or Trustly-dialect error body."""
    body = _body(response)
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        body = {"code": errors[0].get("reason") or errors[0].get("code")}
    code = body.get("code") or body.get("error") or ""
    return f"HTTP {response.status_code} {code}".strip()


class ScanPayUser(FastHttpUser):
    """What every journey shares: settings, EGM choice and response checks."""

    abstract = True
    wait_time = between(0.05, 0.25)
    settings: LoadSettings

    def on_start(self) -> None:
        """Read the options once per simulated user."""
        self.settings = LoadSettings.of(self.environment.parsed_options, self.host or "")
        if not self.settings.egms:
            raise ValueError("--egms names no EGM")

    def next_egm(self) -> str:
        """The EGM of this process's next journey, round robin over `--egms`."""
        return self.settings.egms[next(_journey_numbers) % len(self.settings.egms)]

    @staticmethod
    def expect(response: Any, *statuses: int,
               keys: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """Mark the request failed unless its status is one of `statuses` and its JSON body
        has `keys`; return the body when it passed.

        `response` is Locust's `ResponseContextManager` (typed `Any`: its methods are not
        annotated).
        """
        if response.status_code not in statuses:
            response.failure(_problem(response))
            return None
        body = _body(response)
        missing = [key for key in keys if key not in body]
        if missing:
            response.failure(f"HTTP {response.status_code} without {', '.join(missing)}")
            return None
        response.success()
        return body


class CmsQrTokenUser(ScanPayUser):
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


class ScanThenPayUser(ScanPayUser):
    """A player funding an EGM: the EGM gets a QR from its CMS, the phone scans it and pays.

    The EGM holds one OAuth2 token and fetches a new one when the CMS answers 401 (expiry).
    Every payment uses a new demo-bank username, so the daily limit (per bank account) never
    stops a journey; a small amount keeps the EGMs' credit meters under their caps.
    """

    weight = 3
    token: str | None = None

    def cms_token(self) -> str | None:
        """A new access token of the EGM's OAuth2 client (client credentials)."""
        s = self.settings
        with self.client.post(f"{s.cms_url}/cws/v1/oauth/token",
                              data="grant_type=client_credentials",
                              headers={"Content-Type": "application/x-www-form-urlencoded"},
                              auth=(s.client_id, s.client_secret),
                              name="EGM->CMS POST /cws/v1/oauth/token",
                              catch_response=True) as response:
            body = self.expect(response, 200, keys=("access_token",))
        self.token = str(body["access_token"]) if body else None
        return self.token

    def acquire_qr(self, egm_id: str, headers: dict[str, str]) -> str | None:
        """The QR url the CMS got from Trustly for the EGM (one retry with a fresh token)."""
        for attempt in (1, 2):
            token = self.token or self.cms_token()
            if token is None:
                return None
            with self.client.post(f"{self.settings.cms_url}/cws/v1/egms/{egm_id}/qr",
                                  headers={**headers, "Authorization": f"Bearer {token}"},
                                  name="EGM->CMS POST /cws/v1/egms/[egm]/qr",
                                  catch_response=True) as response:
                if response.status_code == 401 and attempt == 1:
                    response.success()  # an expired token is the protocol working: renew
                    self.token = None
                    continue
                body = self.expect(response, 200, keys=("url",))
            return str(body["url"]) if body else None
        return None

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
        code = urlsplit(url).path.rpartition("/scan/")[2]
        api = f"{self.settings.trustly_url}/api/v1"
        with self.client.get(f"{api}/scan/{code}", headers=headers, catch_response=True,
                             name="Phone->Trustly GET /api/v1/scan/[code]") as response:
            scanned = self.expect(response, 200, keys=("state",))
            if scanned is not None and scanned["state"] != "ACTIVE":
                response.failure(f"QR state {scanned['state']}, not ACTIVE")
                return
        if scanned is not None:
            self.record(self.pay(api, code, headers), started)

    def pay(self, api: str, code: str, headers: dict[str, str]) -> dict[str, Any] | None:
        """Pay at the demo bank; poll a payment answered 202 until it settles."""
        s = self.settings
        body = {"amount": s.amount, "currency": s.currency,
                "bank": {"username": f"load-{uuid.uuid4().hex[:16]}", "password": "load"}}
        with self.client.post(f"{api}/scan/{code}/payments", json=body, headers=headers,
                              name="Phone->Trustly POST /api/v1/scan/[code]/payments",
                              catch_response=True) as response:
            payment = self.expect(response, 201, 202, keys=("status", "paymentId"))
        for _ in range(SETTLE_POLLS):
            if payment is None or payment["status"] in SETTLED:
                break
            gevent.sleep(SETTLE_POLL_S)  # Locust's cooperative wait between polls
            with self.client.get(f"{api}/payments/{payment['paymentId']}", headers=headers,
                                 name="Phone->Trustly GET /api/v1/payments/[id]",
                                 catch_response=True) as response:
                payment = self.expect(response, 200, keys=("status", "paymentId"))
        return payment

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
