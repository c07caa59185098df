"""What every journey shares: the options (command line, environment, web UI), the settings a
user reads from them, and the response checks that make "0 failures" mean "it worked".

Imports nothing from the project, so a load machine needs Locust alone (see README.md).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from locust import FastHttpUser, between
from waiting import poll_until

CORRELATION_HEADER = "X-Correlation-Id"  # what the sims journal a request under
DEMO_EGMS = ",".join(f"EGM-{n:03d}" for n in range(1, 11))
DEFAULT_AMOUNTS = "100:60,500:30,2000:10"
DEFAULT_BANK_OUTCOMES = "ok:91,NotEnoughFunds:3,LoginError:3,AccountLocked:3"
DEFAULT_P95_MS = 5000.0  # loose on purpose: the gate catches a stall, not a slow laptop
DEFAULT_ERROR_SHARE = 0.01


def add_options(parser: Any, **_: Any) -> None:
    """The journeys' own options (also settable from the environment and the web UI).

    Locust sends custom options from the master to its workers, so they are given once, to
    the master (or to the single process).
    """
    add = parser.add_argument
    add("--cms-url", env_var="SCANPAY_LOAD_CMS_URL", default="http://127.0.0.1:8720",
        help="Base URL of the CMS (sim_cms or a partner's). [env: SCANPAY_LOAD_CMS_URL]")
    add("--trustly-url", env_var="SCANPAY_LOAD_TRUSTLY_URL", default="",
        help="Base URL of sim_trustly; default --host. [env: SCANPAY_LOAD_TRUSTLY_URL]")
    add("--egms", env_var="SCANPAY_LOAD_EGMS", default=DEMO_EGMS,
        help="Comma-separated EGM ids for the journeys that use existing EGMs (and for the "
             "floor when there is no admin token).")
    add("--amount", type=int, env_var="SCANPAY_LOAD_AMOUNT", default=100,
        help="Minor units per payment of the scan-pay journey.")
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
    _add_floor_options(add)
    _add_gate_options(add)


def _add_floor_options(add: Any) -> None:
    add("--admin-token", env_var="SCANPAY_LOAD_ADMIN_TOKEN",
        default=os.environ.get("SCANPAY_ADMIN_TOKEN", ""), is_secret=True,
        help="The sims' control-API token: the floor creates its own EGMs with it and the "
             "gates reconcile with it. Default $SCANPAY_ADMIN_TOKEN.")
    add("--run-id", env_var="SCANPAY_LOAD_RUN_ID", default="",
        help="Prefix of this run's EGMs and players (default: a new one per run).")
    add("--amounts", env_var="SCANPAY_LOAD_AMOUNTS", default=DEFAULT_AMOUNTS,
        help="Floor payment amounts with their shares, AMOUNT:SHARE,...")
    add("--bank-outcomes", env_var="SCANPAY_LOAD_BANK_OUTCOMES", default=DEFAULT_BANK_OUTCOMES,
        help="Demo-bank outcomes with their shares: ok or a keyphrase (NotEnoughFunds, "
             "LoginError, AccountLocked, Unavailable), OUTCOME:SHARE,...")
    add("--replay-share", type=float, env_var="SCANPAY_LOAD_REPLAY_SHARE", default=0.05,
        help="Share of spent QRs a player tries to pay again (must be refused).")
    add("--screen-poll-s", type=float, env_var="SCANPAY_LOAD_SCREEN_POLL_S", default=1.5,
        help="How often an EGM screen polls its status (the screen page's own cadence).")
    add("--player-budget", type=int, env_var="SCANPAY_LOAD_PLAYER_BUDGET", default=50_000,
        help="Minor units a player spends before another sits down (under the daily limit).")


def _add_gate_options(add: Any) -> None:
    add("--max-error-share", type=float, env_var="SCANPAY_LOAD_MAX_ERROR_SHARE",
        default=DEFAULT_ERROR_SHARE, help="Gate: highest share of failed requests.")
    add("--max-p95-ms", type=float, env_var="SCANPAY_LOAD_MAX_P95_MS", default=DEFAULT_P95_MS,
        help="Gate: highest p95 of any step, in ms.")
    add("--step-p95", env_var="SCANPAY_LOAD_STEP_P95", default="",
        help="Gate: per-step p95 limits, NAME_PART=MS,... (a step whose name contains "
             "NAME_PART, case-insensitive; overrides --max-p95-ms).")
    add("--settle-timeout", type=float, env_var="SCANPAY_LOAD_SETTLE_TIMEOUT", default=30.0,
        help="Seconds the gates wait at stop for open payments to settle before reconciling.")
    add("--live-interval", type=float, env_var="SCANPAY_LOAD_LIVE_INTERVAL", default=2.0,
        help="Seconds between live status lines (0: none).")


def parse_shares(text: str, what: str) -> tuple[tuple[str, float], ...]:
    """`A:3,B:1` as ((A, 3.0), (B, 1.0)); a bare `A` has share 1. Raises ValueError."""
    shares = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, share = item.partition(":")
        weight = float(share) if share else 1.0
        if not name.strip() or weight < 0:
            raise ValueError(f"{what}: {item!r} is not NAME:SHARE with SHARE >= 0")
        shares.append((name.strip(), weight))
    if not shares or sum(weight for _, weight in shares) <= 0:
        raise ValueError(f"{what}: no positive share in {text!r}")
    return tuple(shares)


def pick(shares: tuple[tuple[str, float], ...], rng: random.Random) -> str:
    """One name drawn with its share's probability."""
    names = [name for name, _ in shares]
    weights = [weight for _, weight in shares]
    chosen: str = rng.choices(names, weights=weights)[0]
    return chosen


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
    admin_token: str = ""
    run_id: str = ""
    amounts: tuple[tuple[str, float], ...] = parse_shares(DEFAULT_AMOUNTS, "--amounts")
    bank_outcomes: tuple[tuple[str, float], ...] = parse_shares(DEFAULT_BANK_OUTCOMES,
                                                                "--bank-outcomes")
    replay_share: float = 0.05
    screen_poll_s: float = 1.5
    player_budget: int = 50_000

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
            client_secret=str(get("client_secret", cls.client_secret)),
            admin_token=str(get("admin_token", "") or ""), run_id=str(get("run_id", "") or ""),
            amounts=parse_shares(str(get("amounts", DEFAULT_AMOUNTS)), "--amounts"),
            bank_outcomes=parse_shares(str(get("bank_outcomes", DEFAULT_BANK_OUTCOMES)),
                                       "--bank-outcomes"),
            replay_share=float(str(get("replay_share", 0.05))),
            screen_poll_s=max(0.1, float(str(get("screen_poll_s", 1.5)))),
            player_budget=int(str(get("player_budget", 50_000))))


def body_of(response: Any) -> dict[str, Any]:
    """The response's JSON object, or {} when it has none."""
    try:
        body = json.loads(response.text or "")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def problem(response: Any) -> str:
    """`HTTP 409 QR_CODE_USED` from a problem+json or Trustly-dialect error body."""
    body = body_of(response)
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        body = {"code": errors[0].get("reason") or errors[0].get("code")}
    code = body.get("code") or body.get("error") or ""
    return f"HTTP {response.status_code} {code}".strip()


SETTLED = frozenset({"CREDITED", "REJECTED_VOIDED", "FAILED_VOIDED"})
SETTLE_TIMEOUT_S, SETTLE_POLL_S = 10.0, 0.25  # a payment answered 202 is polled for 10 s at most


class ScanPayUser(FastHttpUser):
    """What every journey shares: settings and response checks."""

    abstract = True
    wait_time = between(0.05, 0.25)
    settings: LoadSettings
    token: str | None = None  # the CMS access token, renewed when it expires

    def on_start(self) -> None:
        """Read the options once per simulated user."""
        self.settings = LoadSettings.of(self.environment.parsed_options, self.host or "")

    @staticmethod
    def expect(response: Any, *statuses: int,
               keys: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """Mark the request failed unless its status is one of `statuses` and its JSON body
        has `keys`; return the body when it passed.

        `response` is Locust's `ResponseContextManager` (typed `Any`: its methods are not
        annotated).
        """
        if response.status_code not in statuses:
            response.failure(problem(response))
            return None
        body = body_of(response)
        missing = [key for key in keys if key not in body]
        if missing:
            response.failure(f"HTTP {response.status_code} without {', '.join(missing)}")
            return None
        response.success()
        return body

    def cms_token(self) -> str | None:
        """A new access token of the EGM's OAuth2 client at its CMS (client credentials)."""
        s = self.settings
        with self.client.post(f"{s.cms_url}/cws/v1/oauth/token",
                              data="grant_type=client_credentials",
                              headers={"Content-Type": "application/x-www-form-urlencoded"},
                              auth=(s.client_id, s.client_secret),
                              name="EGM->CMS POST /cws/v1/oauth/token",
                              catch_response=True) as response:
            body = self.expect(response, 200, keys=("access_token",))
        return str(body["access_token"]) if body else None

    def cms_call(
        self, method: str, url: str, name: str, keys: tuple[str, ...], *,
        headers: dict[str, str] | None = None,
        check: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> dict[str, Any] | None:
        """One Bearer call to the CMS expecting 200; an expired access token is renewed once
        (a 401 then is the protocol working, not a failure). `check` may fail a 200 body."""
        for attempt in (1, 2):
            self.token = self.token or self.cms_token()
            if self.token is None:
                return None
            sent = {**(headers or {}), "Authorization": f"Bearer {self.token}"}
            with self.client.request(method, url, headers=sent, name=name,
                                     catch_response=True) as response:
                if response.status_code == 401 and attempt == 1:
                    response.success()
                    self.token = None
                    continue
                body = self.expect(response, 200, keys=keys)
                wrong = check(body) if body is not None and check is not None else None
                if wrong:
                    response.failure(wrong)
                return body
        return None

    def scan_code(self, code: str, headers: dict[str, str]) -> dict[str, Any] | None:
        """The phone opens the QR's page: it must be ACTIVE (no spent or expired QR on show)."""
        api = f"{self.settings.trustly_url}/api/v1"
        with self.client.get(f"{api}/scan/{code}", headers=headers, catch_response=True,
                             name="Phone->Trustly GET /api/v1/scan/[code]") as response:
            scanned = self.expect(response, 200, keys=("state",))
            if scanned is not None and scanned["state"] != "ACTIVE":
                response.failure(f"QR state {scanned['state']}, not ACTIVE")
                return None
        return scanned

    def pay_and_settle(self, api: str, code: str, body: dict[str, Any],
                       headers: dict[str, str]) -> dict[str, Any] | None:
        """Pay a scanned code as the phone does; poll a payment answered 202 until it settles."""
        with self.client.post(f"{api}/scan/{code}/payments", json=body, headers=headers,
                              name="Phone->Trustly POST /api/v1/scan/[code]/payments",
                              catch_response=True) as response:
            payment = self.expect(response, 201, 202, keys=("status", "paymentId"))
        looks = 0

        def settled() -> bool | None:
            """The first look is the pay's answer; each later one asks Trustly again. A
            failed request (no payment) ends the wait as settling would."""
            nonlocal payment, looks
            looks += 1
            if looks > 1 and payment is not None:
                with self.client.get(f"{api}/payments/{payment['paymentId']}", headers=headers,
                                     name="Phone->Trustly GET /api/v1/payments/[id]",
                                     catch_response=True) as response:
                    payment = self.expect(response, 200, keys=("status", "paymentId"))
            return True if payment is None or payment["status"] in SETTLED else None

        poll_until(settled, timeout_s=SETTLE_TIMEOUT_S, interval_s=SETTLE_POLL_S)
        return payment
