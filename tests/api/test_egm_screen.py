"""The EGM screen: the page, the status feed it polls, and the QR images a phone scans."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
import zxingcpp
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from sim_cms.screen_api import format_meter
from tests.conftest import ADMIN_TOKEN, CmsFactory, cms_bearer
from tests.unit.test_qr import rasterise_svg

pytestmark = pytest.mark.db

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
STATUS_KEYS = {"id", "egmId", "name", "state", "creditMeter", "creditLimit", "currency",
               "creditMeterText", "now", "qrTokenId", "url", "expiresAt", "rotatesAt", "error",
               "failures", "retryInS", "notice"}


@pytest.fixture
def app(make_cms: CmsFactory) -> Flask:
    return make_cms(with_trustly=True)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def status(client: FlaskClient, egm_id: str = "EGM-001") -> dict[str, Any]:
    response = client.get(f"/egm/{egm_id}/status.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


def page(client: FlaskClient, egm_id: str = "EGM-001") -> str:
    response = client.get(f"/egm/{egm_id}")
    assert response.status_code == 200 and response.mimetype == "text/html"
    return response.get_data(as_text=True)


def decode(image: Image.Image) -> list[str]:
    return [hit.text for hit in zxingcpp.read_barcodes(image)]


def test_the_page_shows_casino_name_state_meter_and_the_current_qr(client: FlaskClient) -> None:
    html = page(client)
    current = status(client)
    assert "Demo Casino" in html and "Demo Slot 001" in html and "IDLE" in html
    assert re.search(r'id="meter">\s*\$0\.00\s*<', html)
    src = f'src="/egm/EGM-001/qr.png?t={current["qrTokenId"]}"'
    assert src in html
    assert "status.json" in html  # the page polls its feed instead of reloading


def test_the_status_feed_has_meter_state_and_qr(client: FlaskClient) -> None:
    body = status(client)
    assert set(body) == STATUS_KEYS
    assert body["egmId"] == body["id"] == "EGM-001"
    assert (body["creditMeter"], body["creditMeterText"], body["state"]) == (0, "$0.00", "IDLE")
    assert body["url"].endswith("/scan/" + body["qrTokenId"])
    assert body["error"] is None and body["notice"] is None and body["retryInS"] is None
    assert body["now"] == "2026-11-25T21:00:00.000Z"


def test_the_status_feed_is_never_cached(client: FlaskClient) -> None:
    for path in ("/egm/EGM-001", "/egm/EGM-001/status.json", "/egm/EGM-001/qr.png",
                 "/egm/EGM-001/qr.svg"):
        assert client.get(path).headers["Cache-Control"] == "no-store"


def test_the_png_decodes_to_the_url_the_feed_names(client: FlaskClient) -> None:
    url = status(client)["url"]
    response = client.get("/egm/EGM-001/qr.png")
    assert response.mimetype == "image/png"
    assert decode(Image.open(io.BytesIO(response.data))) == [url]


def test_the_svg_decodes_to_the_same_url(client: FlaskClient) -> None:
    url = status(client)["url"]
    response = client.get("/egm/EGM-001/qr.svg")
    assert response.mimetype == "image/svg+xml"
    assert decode(rasterise_svg(response.get_data(as_text=True), scale=6)) == [url]


def test_a_funding_shows_on_the_meter(client: FlaskClient) -> None:
    qr_token_id = status(client)["qrTokenId"]
    funding = {"transactionId": "screen-tx-1", "egmId": "EGM-001", "amount": 2000,
               "currency": "USD", "ubai": "ubai-screen-1", "qrTokenId": qr_token_id}
    response = client.post("/cws/v1/fundings", json=funding, headers=cms_bearer(client))
    assert response.status_code == 201, response.get_data(as_text=True)
    assert (status(client)["creditMeter"], status(client)["creditMeterText"]) == (2000, "$20.00")
    assert re.search(r'id="meter">\s*\$20\.00\s*<', page(client))


def test_a_state_change_shows_on_the_screen(client: FlaskClient) -> None:
    client.post("/_sim/egms/EGM-001", json={"state": "DOOR_OPEN"}, headers=ADMIN)
    assert status(client)["state"] == "DOOR_OPEN"
    assert "DOOR OPEN" in page(client)


def test_an_egm_name_is_escaped_on_the_page(client: FlaskClient) -> None:
    name = '<script>alert("x")</script>'
    client.put("/_sim/egms/EGM-066", json={"name": name}, headers=ADMIN)
    html = page(client, "EGM-066")
    assert name not in html and "&lt;script&gt;" in html


def test_an_unknown_egm_gets_an_html_404_page(client: FlaskClient) -> None:
    response = client.get("/egm/EGM-404")
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "Unknown machine" in response.get_data(as_text=True)
    for path in ("status.json", "qr.png", "qr.svg"):
        response = client.get(f"/egm/EGM-404/{path}")
        assert response.status_code == 404
        assert response.get_json()["code"] == "EGM_NOT_FOUND"


def test_while_trustly_fails_the_page_says_when_it_retries(make_cms: CmsFactory) -> None:
    app = make_cms(with_trustly=True)
    trustly: Flask = app.extensions["sim_cms"].trustly_transport.app
    trustly.test_client().post("/_sim/faults", headers=ADMIN, json={
        "path": "/auth-service/api/oauth2/qrcode/token", "action": "status", "status": 503})
    client = app.test_client()
    html = page(client)
    assert "QR unavailable — retrying in 1s" in html
    assert 'id="qr"' in html and "Getting a QR code" in html
    response = client.get("/egm/EGM-001/qr.png")
    assert response.status_code == 503 and response.get_json()["code"] == "QR_UNAVAILABLE"


@pytest.mark.parametrize(("minor", "currency", "text"), [
    (0, "USD", "$0.00"), (123456789, "USD", "$1,234,567.89"), (5, "EUR", "€0.05"),
    (100, "SEK", "SEK 1.00"),
])
def test_meters_read_like_money(minor: int, currency: str, text: str) -> None:
    assert format_meter(minor, currency) == text
