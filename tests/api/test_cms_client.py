"""The reference CMS adapter against a real in-process sim_cms: outcomes, faults, tokens.

The adapter reaches sim_cms through `httpx.WSGITransport`, wrapped in a recorder so tests can
count what went over the wire (token fetches, 401s). Faults are declared on the CMS through
its control API; a timeout, which an in-process transport cannot produce, comes from a
transport that raises `httpx.ReadTimeout`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from flask import Flask

from sim_cms.models import QrDisplay
from sim_trustly.cms_client.adapters import adapter_for, build_adapter
from sim_trustly.cms_client.partner_profiles import DEFAULT_CMS_PROFILE, AuthConfig, CmsProfile
from sim_trustly.cms_client.protocol import FundingCall, FundingResult
from sim_trustly.cms_client.reference_adapter import ReferenceAdapter
from sim_trustly.context import TrustlyContext
from simkit.clock import ManualClock
from tests.conftest import ADMIN_TOKEN, START, CmsFactory, TrustlyFactory, cms_bearer

pytestmark = pytest.mark.db

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PROFILE = dataclasses.replace(DEFAULT_CMS_PROFILE, base_url="http://cms.test")
TOKEN_PATH = "/cws/v1/oauth/token"
EGM = "EGM-001"
QR = "qr-shown-on-egm-001"
NEXT_QR = "qr-scanned-by-the-next-player"  # a QR token pays one funding


class Recorder(httpx.BaseTransport):
    """Passes requests to `inner` and remembers (method, path, status) of each exchange."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.exchanges: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        with self._lock:
            self.exchanges.append((request.method, request.url.path, response.status_code))
        return response

    def count(self, method: str, path: str, status: int | None = None) -> int:
        return sum(1 for m, p, s in self.exchanges
                   if (m, p) == (method, path) and status in (None, s))


class TimeoutAfter(httpx.BaseTransport):
    """Raises ReadTimeout for POSTs, optionally after the CMS has handled them (lost answer)."""

    def __init__(self, inner: httpx.BaseTransport, *, deliver: bool) -> None:
        self.inner, self.deliver = inner, deliver

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path != TOKEN_PATH:
            if self.deliver:
                self.inner.handle_request(request).read()
            raise httpx.ReadTimeout("timed out", request=request)
        return self.inner.handle_request(request)


@pytest.fixture
def cms(make_cms: CmsFactory) -> Flask:
    app = make_cms()
    now = app.extensions["sim_cms"].clock.now()
    with app.extensions["sim_cms"].db.write() as session:  # the QRs players scanned
        for shown in (QR, NEXT_QR):
            session.add(QrDisplay(qr_token_id=shown, egm_id=EGM, url=f"https://t/{shown}",
                                  token="jwt", expires_at=now, rotates_at=now,
                                  displayed_at=now))
    return app


@pytest.fixture
def wire(cms: Flask) -> Recorder:
    return Recorder(httpx.WSGITransport(app=cms))


@pytest.fixture
def adapter(wire: Recorder, clock: ManualClock) -> ReferenceAdapter:
    return ReferenceAdapter(PROFILE, wire, clock=clock)


def call(transaction_id: str = "tx-1", **changes: Any) -> FundingCall:
    values: dict[str, Any] = {"transaction_id": transaction_id, "egm_id": EGM, "amount": 2000,
                              "currency": "USD", "ubai": "ubai-alice", "qr_token_id": QR}
    values.update(changes)
    return FundingCall(**values)


def meter(cms: Flask, egm_id: str = EGM) -> int:
    client = cms.test_client()
    response = client.get(f"/cws/v1/egms/{egm_id}", headers=cms_bearer(client))
    value: int = response.get_json()["creditMeter"]
    return value


def control(cms: Flask, path: str, body: dict[str, Any]) -> None:
    response = cms.test_client().post(path, json=body, headers=ADMIN)
    assert response.status_code in (200, 201), response.get_data(as_text=True)


def fault(cms: Flask, action: str, **rule: Any) -> None:
    control(cms, "/_sim/faults", {"method": "POST", "path": "/cws/v1/fundings",
                                  "action": action, "times": 1, **rule})


def test_funding_is_applied_with_the_new_credit_meter(adapter: ReferenceAdapter,
                                                      cms: Flask) -> None:
    result = adapter.post_funding(call())
    assert result == FundingResult("APPLIED", http_status=201, credit_meter=2000)
    assert meter(cms) == 2000


def test_resent_funding_is_applied_once_and_reported_as_replay(adapter: ReferenceAdapter,
                                                               cms: Flask) -> None:
    adapter.post_funding(call())
    again = adapter.post_funding(call())
    assert (again.outcome, again.credit_meter, again.detail) == ("APPLIED", 2000, "replayed")
    assert meter(cms) == 2000


REJECTIONS: list[tuple[str, dict[str, Any], str | None, int]] = [
    ("EGM_NOT_FOUND", {"egm_id": "EGM-404"}, None, 404),
    ("EGM_BUSY", {}, "IN_GAME", 409),
    ("EGM_DOOR_OPEN", {}, "DOOR_OPEN", 409),
    ("EGM_TILT", {}, "TILT", 409),
    ("EGM_OFFLINE", {}, "OFFLINE", 503),
    ("INVALID_AMOUNT", {"amount": 0}, None, 422),
    ("INVALID_AMOUNT", {"currency": "EUR"}, None, 422),
    ("QR_TOKEN_MISMATCH", {"qr_token_id": "qr-never-shown"}, None, 422),
    ("CREDIT_LIMIT_EXCEEDED", {"amount": 500_001}, None, 422),
    ("DAILY_LIMIT_EXCEEDED", {"amount": 100_001}, None, 422),
    ("VALIDATION_ERROR", {"ubai": "not a ubai!"}, None, 400),
]


@pytest.mark.parametrize(("code", "changes", "state", "status"), REJECTIONS,
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(REJECTIONS)])
def test_each_decided_refusal_is_rejected_with_its_code(
    adapter: ReferenceAdapter, cms: Flask, code: str, changes: dict[str, Any],
    state: str | None, status: int,
) -> None:
    if state:
        control(cms, f"/_sim/egms/{EGM}", {"state": state})
    result = adapter.post_funding(call(**changes))
    assert (result.outcome, result.code, result.http_status) == ("REJECTED", code, status)
    assert result.detail  # the CMS's explanation travels with the code
    assert meter(cms) == 0


def test_reused_transaction_id_with_another_body_is_rejected(adapter: ReferenceAdapter,
                                                             cms: Flask) -> None:
    adapter.post_funding(call())
    result = adapter.post_funding(call(amount=3000))
    assert (result.outcome, result.code, result.http_status) == (
        "REJECTED", "IDEMPOTENCY_KEY_REUSED", 422)
    assert meter(cms) == 2000


def test_status_inquiry_reports_applied_rejected_and_never_seen(adapter: ReferenceAdapter,
                                                                cms: Flask) -> None:
    adapter.post_funding(call("tx-ok"))
    adapter.post_funding(call("tx-no", egm_id="EGM-404"))
    assert adapter.get_funding("tx-ok") == FundingResult("APPLIED", http_status=201,
                                                         credit_meter=2000)
    assert adapter.get_funding("tx-no") == FundingResult("REJECTED", http_status=404,
                                                         code="EGM_NOT_FOUND")
    assert adapter.get_funding("tx-never") == FundingResult("NOT_FOUND", http_status=404,
                                                            code="FUNDING_NOT_FOUND")


def test_limit_shows_what_remains_today(adapter: ReferenceAdapter) -> None:
    before = adapter.get_limit("ubai-alice")
    assert (before.outcome, before.remaining, before.daily_limit) == ("OK", 100_000, 100_000)
    adapter.post_funding(call())
    assert adapter.get_limit("ubai-alice").remaining == 98_000


def test_injected_503_is_unknown_and_the_same_id_is_safe_to_resend(adapter: ReferenceAdapter,
                                                                   cms: Flask) -> None:
    fault(cms, "status", status=503)
    result = adapter.post_funding(call())
    assert (result.outcome, result.http_status, result.code) == ("UNKNOWN", 503,
                                                                "FAULT_INJECTED")
    assert adapter.get_funding("tx-1").outcome == "NOT_FOUND"
    assert adapter.post_funding(call()).outcome == "APPLIED"
    assert meter(cms) == 2000


def test_dropped_connection_before_the_cms_decides_is_unknown(adapter: ReferenceAdapter,
                                                              cms: Flask) -> None:
    fault(cms, "drop")
    result = adapter.post_funding(call())
    assert result.outcome == "UNKNOWN" and result.http_status is None
    assert "RemoteProtocolError" in result.detail
    assert adapter.get_funding("tx-1").outcome == "NOT_FOUND"
    assert meter(cms) == 0


def test_connection_dropped_after_applying_is_unknown_then_inquiry_finds_it(
    adapter: ReferenceAdapter, cms: Flask,
) -> None:
    fault(cms, "apply_then_drop")
    assert adapter.post_funding(call()).outcome == "UNKNOWN"
    assert adapter.get_funding("tx-1") == FundingResult("APPLIED", http_status=201,
                                                        credit_meter=2000)
    assert meter(cms) == 2000


@pytest.mark.parametrize("delivered", [False, True], ids=["lost-request", "lost-answer"])
def test_read_timeout_is_unknown_and_inquiry_tells_what_happened(
    wire: Recorder, cms: Flask, clock: ManualClock, delivered: bool,
) -> None:
    adapter = ReferenceAdapter(PROFILE, TimeoutAfter(wire, deliver=delivered), clock=clock)
    result = adapter.post_funding(call())
    assert (result.outcome, result.detail) == ("UNKNOWN", "ReadTimeout: timed out")
    assert adapter.get_funding("tx-1").outcome == ("APPLIED" if delivered else "NOT_FOUND")
    assert meter(cms) == (2000 if delivered else 0)


def problem(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"status": status, "code": code, "detail": "x"},
                          headers={"Content-Type": "application/problem+json"})


SCRIPTED: dict[str, Callable[[httpx.Request], httpx.Response]] = {
    "in-progress-409": lambda r: problem(409, "FUNDING_IN_PROGRESS"),
    "proxy-502-html": lambda r: httpx.Response(502, text="<html>Bad Gateway</html>"),
    "internal-500": lambda r: problem(500, "INTERNAL_ERROR"),
    "unparseable-201": lambda r: httpx.Response(201, text="{not json"),
    "201-without-applied": lambda r: httpx.Response(201, json={"status": "PENDING"}),
    "rate-limited-429": lambda r: problem(429, "TOO_MANY_REQUESTS"),
}


def scripted(answer: Callable[[httpx.Request], httpx.Response]) -> ReferenceAdapter:
    """An adapter with a working token endpoint and `answer` for every other request."""
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        return answer(request)
    return ReferenceAdapter(PROFILE, httpx.MockTransport(handler), clock=ManualClock(START))


@pytest.mark.parametrize("name", list(SCRIPTED))
def test_answers_without_a_decision_are_unknown(name: str) -> None:
    adapter = scripted(SCRIPTED[name])
    assert adapter.post_funding(call()).outcome == "UNKNOWN"
    assert adapter.get_funding("tx-1").outcome == "UNKNOWN"
    assert adapter.get_limit("ubai-alice").outcome == "UNKNOWN"


def test_shared_clock_past_the_token_ttl_refreshes_once_before_the_call(
    adapter: ReferenceAdapter, wire: Recorder, clock: ManualClock,
) -> None:
    adapter.post_funding(call("tx-a"))
    clock.advance(301)  # the CMS token TTL is 300 s; TPAS reads the same clock
    assert adapter.post_funding(call("tx-b", qr_token_id=NEXT_QR)).outcome == "APPLIED"
    assert wire.count("POST", TOKEN_PATH) == 2
    assert wire.count("POST", "/cws/v1/fundings", 401) == 0


def test_token_expired_at_the_cms_is_refreshed_once_and_the_call_retried(
    wire: Recorder, cms: Flask, clock: ManualClock,
) -> None:
    adapter = ReferenceAdapter(PROFILE, wire, clock=ManualClock(START))  # TPAS's own clock
    adapter.post_funding(call("tx-a"))
    clock.advance(301)  # only the CMS's time moves: TPAS learns of the expiry from the 401
    result = adapter.post_funding(call("tx-b", qr_token_id=NEXT_QR))
    assert result.outcome == "APPLIED" and result.credit_meter == 4000
    assert wire.count("POST", "/cws/v1/fundings", 401) == 1
    assert wire.count("POST", TOKEN_PATH) == 2


def test_token_forgotten_by_a_cms_reset_is_replaced(adapter: ReferenceAdapter, wire: Recorder,
                                                    cms: Flask) -> None:
    assert adapter.get_limit("ubai-alice").outcome == "OK"
    control(cms, "/_sim/reset", {})
    assert adapter.get_limit("ubai-alice").outcome == "OK"
    assert wire.count("GET", "/cws/v1/limits/ubai-alice", 401) == 1
    assert wire.count("POST", TOKEN_PATH) == 2


def test_threads_that_all_meet_an_expired_token_share_one_refresh(
    wire: Recorder, clock: ManualClock,
) -> None:
    adapter = ReferenceAdapter(PROFILE, wire, clock=ManualClock(START))
    adapter.get_limit("ubai-alice")
    clock.advance(301)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(
        adapter.get_limit("ubai-alice").outcome)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["OK"] * 8
    assert wire.count("POST", TOKEN_PATH) == 2


def test_refused_client_credentials_are_unknown_and_never_logged(
    wire: Recorder, clock: ManualClock, caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "wrong-secret-value"
    auth = dataclasses.replace(PROFILE.auth, client_secret=secret)
    adapter = ReferenceAdapter(dataclasses.replace(PROFILE, auth=auth), wire, clock=clock)
    with caplog.at_level(logging.DEBUG):
        result = adapter.post_funding(call())
    assert result.outcome == "UNKNOWN"
    assert result.detail == "CmsUnavailable: token endpoint answered 401 INVALID_CLIENT"
    assert secret not in caplog.text and "tpas-secret" not in caplog.text
    assert wire.count("POST", "/cws/v1/fundings") == 0


def test_tokens_never_reach_the_logs(adapter: ReferenceAdapter, cms: Flask,
                                     caplog: pytest.LogCaptureFixture) -> None:
    fault(cms, "status", status=503)
    with caplog.at_level(logging.DEBUG):
        adapter.post_funding(call())
        adapter.get_funding("tx-1")
    assert "Bearer" not in caplog.text and "tpas-secret" not in caplog.text
    assert "tx-1 unknown: 503 FAULT_INJECTED" in caplog.text


@pytest.mark.parametrize(("auth", "header", "value"), [
    (AuthConfig(kind="basic", username="tpas", password="pw"), "Authorization",
     "Basic dHBhczpwdw=="),
    (AuthConfig(kind="api_key", header="X-Api-Key", key="k-1"), "X-Api-Key", "k-1"),
])
def test_static_credentials_are_sent_as_configured_and_not_refreshed(
    auth: AuthConfig, header: str, value: str,
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return problem(401, "TOKEN_EXPIRED")

    profile = dataclasses.replace(PROFILE, auth=auth)
    result = ReferenceAdapter(profile, httpx.MockTransport(handler)).post_funding(call())
    assert (result.outcome, result.http_status) == ("UNKNOWN", 401)
    assert [r.headers[header] for r in seen] == [value]  # once: nothing to refresh


def test_base_url_prefix_and_configured_paths_are_used() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(404, json={"code": "FUNDING_NOT_FOUND"})

    profile = CmsProfile(name="p", base_url="https://partner.test/cms",
                         auth=AuthConfig(kind="api_key", key="k"),
                         paths=dataclasses.replace(PROFILE.paths,
                                                   funding_status="/s/{transactionId}"))
    assert build_adapter(profile, httpx.MockTransport(handler)).get_funding("a/b").outcome == (
        "NOT_FOUND")
    assert seen == ["/cms/s/a%2Fb"]


def test_adapter_for_shares_one_adapter_per_profile_over_the_context_transport(
    make_trustly: TrustlyFactory, wire: Recorder, cms: Flask,
) -> None:
    own = CmsProfile(name="acme", base_url="http://acme.test", auth=PROFILE.auth)
    app = make_trustly(cms=PROFILE, cms_profiles={"acme": own})
    ctx: TrustlyContext = dataclasses.replace(app.extensions["sim_trustly"], cms_transport=wire)
    demo = adapter_for(ctx, "demo-merchant")
    assert adapter_for(ctx, "another-merchant") is demo
    assert adapter_for(ctx, "acme") is not demo
    assert demo.post_funding(call()).outcome == "APPLIED"
    assert wire.count("POST", "/cws/v1/fundings", 201) == 1
