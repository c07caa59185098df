"""QR acquisition when Trustly fails: retried with backoff, shown on the screen, never a 500.

Faults are declared on the in-process sim_trustly through its control API; timeouts and
malformed answers come from an httpx.MockTransport put in sim_trustly's place, because an
in-process WSGI transport cannot time out.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from sim_cms.context import CmsContext
from sim_cms.models import QrDisplay
from sim_cms.qr_display import rotate_due
from sim_cms.settings import TrustlyLink
from simkit.clock import ManualClock, format_instant
from tests.conftest import ADMIN_TOKEN, START, CmsFactory, cms_bearer

pytestmark = pytest.mark.db

TOKEN_PATH = "/auth-service/api/oauth2/qrcode/token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def ctx_of(app: Flask) -> CmsContext:
    context: CmsContext = app.extensions["sim_cms"]
    return context


def add_fault(app: Flask, **rule: Any) -> None:
    trustly: Flask = ctx_of(app).trustly_transport.app
    response = trustly.test_client().post("/_sim/faults", json={"path": TOKEN_PATH, **rule},
                                          headers=ADMIN)
    assert response.status_code == 201, response.get_data(as_text=True)


def clear_faults(app: Flask) -> None:
    trustly: Flask = ctx_of(app).trustly_transport.app
    assert trustly.test_client().delete("/_sim/faults", headers=ADMIN).status_code == 200


def rewire(app: Flask, handler: Callable[[httpx.Request], httpx.Response]) -> None:
    """Put a scripted Trustly behind the CMS (the context is frozen: replace it whole)."""
    app.extensions["sim_cms"] = dataclasses.replace(
        ctx_of(app), trustly_transport=httpx.MockTransport(handler))


def displays(app: Flask) -> int:
    with ctx_of(app).db.read() as session:
        return int(session.scalar(select(func.count()).select_from(QrDisplay)) or 0)


def status(client: FlaskClient, egm_id: str = "EGM-001") -> dict[str, Any]:
    response = client.get(f"/egm/{egm_id}/status.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


def force(client: FlaskClient, egm_id: str = "EGM-001") -> Any:
    return client.post(f"/cws/v1/egms/{egm_id}/qr", headers=cms_bearer(client))


def assert_trustly_problem(response: Any, status_code: int, reason: str) -> dict[str, Any]:
    assert response.status_code == status_code
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.get_json()
    assert body["code"] == "TRUSTLY_UNAVAILABLE" and body["reason"] == reason
    assert isinstance(body["retryAfter"], int) and body["retryAfter"] >= 1
    return body


def retry_waits(app: Flask, clock: ManualClock, passes: int) -> list[int]:
    """Run rotation passes at each retry instant; return the waits the CMS chose."""
    client, waits = app.test_client(), []
    for _ in range(passes):
        rotate_due(ctx_of(app))
        seen = status(client)
        waits.append(seen["retryInS"])
        clock.advance(seen["retryInS"])
    return waits


def test_two_503s_are_retried_after_1_then_2_seconds_then_the_qr_appears(
    make_cms: CmsFactory, clock: ManualClock,
) -> None:
    app = make_cms(with_trustly=True)
    client = app.test_client()
    add_fault(app, action="status", status=503, times=2)
    seen = status(client)  # the screen asks first: a lazy acquisition, which fails
    assert seen["qrTokenId"] is None and seen["failures"] == 1
    assert seen["error"].startswith("HTTP 503") and seen["retryInS"] == 1
    assert seen["notice"] == "QR unavailable — retrying in 1s"
    assert "QR unavailable — retrying in 1s" in client.get("/egm/EGM-001").get_data(as_text=True)

    clock.advance(0.5)
    assert status(client)["failures"] == 1  # still backing off: Trustly is not asked
    clock.advance(0.5)
    seen = status(client)
    assert (seen["failures"], seen["retryInS"], seen["qrTokenId"]) == (2, 2, None)
    clock.advance(2)
    seen = status(client)
    assert seen["qrTokenId"] and seen["error"] is None and seen["notice"] is None
    assert seen["failures"] == 0 and displays(app) == 1


def test_backoff_doubles_and_stops_at_the_configured_cap(
    make_cms: CmsFactory, clock: ManualClock,
) -> None:
    app = make_cms(with_trustly=True, qr_retry_max_s=4)
    add_fault(app, action="status", status=500)
    assert retry_waits(app, clock, 6) == [1, 2, 4, 4, 4, 4]
    clear_faults(app)
    rotate_due(ctx_of(app))
    assert status(app.test_client())["qrTokenId"]


def test_failed_refresh_keeps_the_still_valid_qr_on_screen(
    make_cms: CmsFactory, clock: ManualClock,
) -> None:
    app = make_cms(with_trustly=True)
    client = app.test_client()
    before = status(client)["qrTokenId"]
    add_fault(app, action="status", status=503)
    clock.advance(270)
    seen = status(client)
    assert seen["qrTokenId"] == before and seen["failures"] == 1
    assert seen["notice"] == "QR refresh failing — retrying in 1s"
    clock.advance(30)  # Trustly's expiry: the old QR is useless now and is taken off
    seen = status(client)
    assert seen["qrTokenId"] is None and seen["notice"].startswith("QR unavailable")
    png = client.get("/egm/EGM-001/qr.png")
    assert png.status_code == 503 and png.get_json()["code"] == "QR_UNAVAILABLE"
    assert int(png.headers["Retry-After"]) >= 1


def test_wrong_credentials_back_off_until_the_lockout_and_honour_its_retry_after(
    make_cms: CmsFactory, clock: ManualClock,
) -> None:
    app = make_cms(with_trustly=True, trustly=TrustlyLink(access_key="wrong-key"))
    client = app.test_client()
    for _ in range(5):  # sim_trustly locks an accessId after 5 failures within 60 s
        body = assert_trustly_problem(force(client), 502, "unauthorized")
        assert body["trustlyStatus"] == 401
    locked = force(client)
    body = assert_trustly_problem(locked, 503, "rate_limited")
    assert body["trustlyStatus"] == 429
    retry_after = int(locked.headers["Retry-After"])
    assert body["retryAfter"] == retry_after > 32  # Trustly's wait, not our 6th backoff (32 s)
    seen = status(client)
    assert seen["retryInS"] == retry_after and seen["error"].startswith("HTTP 429")
    assert seen["notice"] == f"QR unavailable — retrying in {retry_after}s"

    clock.advance(retry_after - 1)
    assert status(client)["failures"] == 6  # nobody asked Trustly during its lockout
    assert displays(app) == 0


def test_merchant_that_is_not_the_credentials_gets_forbidden(make_cms: CmsFactory) -> None:
    app = make_cms(with_trustly=True, trustly=TrustlyLink(merchant_id="someone-else"))
    body = assert_trustly_problem(force(app.test_client()), 502, "forbidden")
    assert body["trustlyStatus"] == 403


def test_a_timeout_is_retried_and_shown(make_cms: CmsFactory, clock: ManualClock) -> None:
    app = make_cms(with_trustly=True)
    client = app.test_client()

    def too_slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    rewire(app, too_slow)
    body = assert_trustly_problem(force(client), 502, "timeout")
    assert body["trustlyStatus"] is None
    seen = status(client)
    assert seen["error"].startswith("timeout") and seen["qrTokenId"] is None
    clock.advance(seen["retryInS"])  # the forced attempt was the first failure (1 s)
    assert retry_waits(app, clock, 3) == [2, 4, 8]


def test_a_dropped_connection_is_retried_and_shown(make_cms: CmsFactory) -> None:
    app = make_cms(with_trustly=True)
    add_fault(app, action="drop", times=1)
    assert_trustly_problem(force(app.test_client()), 502, "connection")
    assert force(app.test_client()).status_code == 200


def test_nothing_listening_at_the_trustly_url_is_a_connection_error(
    make_cms: CmsFactory,
) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = make_cms(trustly=TrustlyLink(base_url=f"http://127.0.0.1:{port}",
                                       connect_timeout_s=1.0, read_timeout_s=1.0))
    client = app.test_client()
    assert_trustly_problem(force(client), 502, "connection")
    page = client.get("/egm/EGM-001")
    assert page.status_code == 200 and "QR unavailable — retrying in" in page.get_data(True)


GOOD_URL = "https://trustly.example/scan/abcDEF123_-xyz"
LATER = format_instant(START + timedelta(seconds=300))


@pytest.mark.parametrize("raw", [
    b"not json",
    b"[]",
    json.dumps({"token": "t", "expiresAt": LATER}).encode(),
    json.dumps({"url": 7, "token": "t", "expiresAt": LATER}).encode(),
    json.dumps({"url": "ftp://trustly.example/scan/x", "token": "t",
                "expiresAt": LATER}).encode(),
    json.dumps({"url": "https://trustly.example/scan/\u00e9t\u00e9", "token": "t",
                "expiresAt": LATER}).encode(),
    json.dumps({"url": GOOD_URL + "x" * 2000, "token": "t", "expiresAt": LATER}).encode(),
    json.dumps({"url": GOOD_URL, "expiresAt": LATER}).encode(),
    json.dumps({"url": GOOD_URL, "token": "t"}).encode(),
    json.dumps({"url": GOOD_URL, "token": "t", "expiresAt": "soon"}).encode(),
    json.dumps({"url": GOOD_URL, "token": "t", "expiresAt": True}).encode(),
    json.dumps({"url": GOOD_URL, "token": "t", "expiresAt": 10**30}).encode(),
    json.dumps({"url": GOOD_URL, "token": "t",
                "expiresAt": format_instant(START - timedelta(seconds=1))}).encode(),
    json.dumps({"url": "https://trustly.example/", "token": "not-a-jwt",
                "expiresAt": LATER}).encode(),
], ids=["not-json", "array", "no-url", "url-number", "ftp-url", "non-ascii-url", "huge-url",
        "no-token", "no-expiry", "bad-expiry", "bool-expiry", "huge-epoch", "past-expiry",
        "no-code-no-jwt"])
def test_malformed_trustly_answers_are_refused_and_recorded(
    make_cms: CmsFactory, raw: bytes,
) -> None:
    app = make_cms()
    rewire(app, lambda request: httpx.Response(
        200, content=raw, headers={"Content-Type": "application/json"}))
    client = app.test_client()
    assert_trustly_problem(force(client), 502, "malformed")
    assert displays(app) == 0
    assert status(client)["failures"] == 1


def test_epoch_ms_expiry_and_a_code_from_the_jwt_are_accepted(make_cms: CmsFactory) -> None:
    import jwt

    token = jwt.encode({"jti": "code-from-jwt"}, "k" * 32, algorithm="HS256")
    expires_ms = int((START + timedelta(seconds=300)).timestamp() * 1000)
    app = make_cms()
    rewire(app, lambda request: httpx.Response(
        200, json={"url": "https://trustly.example/", "token": token, "expiresAt": expires_ms}))
    body = force(app.test_client()).get_json()
    assert body["qrTokenId"] == "code-from-jwt"
    assert body["expiresAt"] == LATER


def test_trustly_receives_basic_auth_and_the_documented_body(make_cms: CmsFactory) -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"url": GOOD_URL, "token": "t", "expiresAt": LATER})

    app = make_cms(location_id="floor-2")
    rewire(app, record)
    assert force(app.test_client(), "EGM-007").status_code == 200
    (request,) = seen
    assert request.url.path == TOKEN_PATH
    assert request.headers["Authorization"] == httpx.BasicAuth(
        "demo-access-id", "demo-access-key")._auth_header
    assert json.loads(request.content) == {"merchantId": "demo-merchant", "egmId": "EGM-007",
                                           "locationId": "floor-2"}


def test_forced_acquisition_answers_the_documented_shape(make_cms: CmsFactory) -> None:
    app = make_cms(with_trustly=True)
    client = app.test_client()
    response = force(client, "EGM-002")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"egmId", "url", "qrTokenId", "expiresAt", "rotatesAt"}
    assert body["egmId"] == "EGM-002" and body["url"].endswith("/scan/" + body["qrTokenId"])
    assert body["expiresAt"] == LATER
    assert body["rotatesAt"] == format_instant(START + timedelta(seconds=270))
    assert status(client, "EGM-002")["qrTokenId"] == body["qrTokenId"]


def test_forcing_a_qr_for_an_unknown_egm_is_404_and_asks_trustly_nothing(
    make_cms: CmsFactory,
) -> None:
    calls: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500)

    app = make_cms()
    rewire(app, record)
    response = force(app.test_client(), "EGM-999")
    assert response.status_code == 404 and response.get_json()["code"] == "EGM_NOT_FOUND"
    assert calls == [] and displays(app) == 0


def test_an_egm_removed_by_a_reset_gets_no_qr(make_cms: CmsFactory) -> None:
    """The CMS remembers which EGMs exist; a reset forgets, and recording checks again."""
    calls: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={"url": f"https://t.example/scan/c{len(calls)}",
                                         "token": "t", "expiresAt": LATER})

    app = make_cms()
    rewire(app, record)
    client = app.test_client()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert client.put("/_sim/egms/EXTRA-1", json={}, headers=admin).status_code == 201
    assert force(client, "EXTRA-1").status_code == 200
    assert client.post("/_sim/reset", headers=admin).status_code == 200
    response = force(client, "EXTRA-1")
    assert response.status_code == 404 and response.get_json()["code"] == "EGM_NOT_FOUND"
    assert len(calls) == 1 and displays(app) == 0
    ctx_of(app).known_egms.add("EXTRA-1")  # as another process's reset would leave it
    response = force(client, "EXTRA-1")
    assert response.status_code == 404 and response.get_json()["code"] == "EGM_NOT_FOUND"
    assert displays(app) == 0


def test_forcing_a_qr_needs_a_bearer_token(make_cms: CmsFactory) -> None:
    app = make_cms(with_trustly=True)
    response = app.test_client().post("/cws/v1/egms/EGM-001/qr")
    assert response.status_code == 401 and "WWW-Authenticate" in response.headers
    assert displays(app) == 0


def test_the_cms_passes_its_callers_correlation_id_on_to_trustly(make_cms: CmsFactory) -> None:
    """One id across the hop: Trustly's journal files the CMS's token request under the id
    the CMS's own caller sent, so a report can draw the acquisition as one sequence."""
    app = make_cms(with_trustly=True)
    client = app.test_client()
    response = client.post("/cws/v1/egms/EGM-002/qr",
                           headers={**cms_bearer(client), "X-Correlation-Id": "corr-qr-hop-1"})
    assert response.status_code == 200
    assert response.headers["X-Correlation-Id"] == "corr-qr-hop-1"
    trustly = app.extensions["sim_cms"].trustly_transport.app
    entries = trustly.test_client().get(
        "/_sim/journal?correlationId=corr-qr-hop-1",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).get_json()["entries"]
    assert [(e["method"], e["path"]) for e in entries] == [
        ("POST", "/auth-service/api/oauth2/qrcode/token")]
