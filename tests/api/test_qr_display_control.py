"""`POST /_sim/egms/{id}/qr-display`: show a QR on an EGM without a Trustly, as if acquired.

Tests and partner-less harness runs need a displayed QR because a funding's `qrTokenId` is
checked against it. Every refusal must leave the EGM's screen as it was.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from simkit.clock import format_instant
from tests.conftest import ADMIN_TOKEN, START, cms_bearer

pytestmark = pytest.mark.db

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LATER = format_instant(START + timedelta(minutes=10))


def show(client: FlaskClient, egm_id: str, body: Any,
         headers: dict[str, str] | None = None) -> TestResponse:
    return client.post(f"/_sim/egms/{egm_id}/qr-display", json=body,
                       headers=ADMIN if headers is None else headers)


def screen_qr(client: FlaskClient, egm_id: str) -> dict[str, Any]:
    qr: dict[str, Any] = client.get(f"/_sim/egms/{egm_id}", headers=ADMIN).get_json()["qr"]
    return qr


def fund(client: FlaskClient, qr_token_id: str, transaction_id: str = "tx-qr-1") -> TestResponse:
    body = {"transactionId": transaction_id, "egmId": "EGM-001", "amount": 500,
            "currency": "USD", "ubai": "ubai-qr", "qrTokenId": qr_token_id}
    return client.post("/cws/v1/fundings", json=body, headers=cms_bearer(client))


def test_a_registered_qr_is_on_screen_and_accepted_by_a_funding(cms_client: FlaskClient) -> None:
    response = show(cms_client, "EGM-001", {"qrTokenId": "code-1", "expiresAt": LATER,
                                            "url": "https://trustly.example/scan/code-1"})
    assert response.status_code == 201
    assert response.get_json() == {
        "egmId": "EGM-001", "url": "https://trustly.example/scan/code-1", "qrTokenId": "code-1",
        "expiresAt": LATER, "rotatesAt": format_instant(START + timedelta(seconds=570)),
    }
    assert screen_qr(cms_client, "EGM-001")["qrTokenId"] == "code-1"
    assert fund(cms_client, "code-1").status_code == 201


def test_the_token_id_defaults_to_the_code_at_the_end_of_the_url(
    cms_client: FlaskClient,
) -> None:
    response = show(cms_client, "EGM-002", {"url": "https://t.example/scan/abc123",
                                            "expiresAt": LATER})
    assert response.status_code == 201 and response.get_json()["qrTokenId"] == "abc123"


def test_a_qr_shown_on_another_egm_does_not_fund_this_one(cms_client: FlaskClient) -> None:
    show(cms_client, "EGM-002", {"url": "https://t.example/scan/other", "expiresAt": LATER})
    response = fund(cms_client, "other")
    assert response.status_code == 422 and response.get_json()["code"] == "QR_TOKEN_MISMATCH"


def test_a_token_id_already_displayed_is_refused_and_the_screen_keeps_its_qr(
    cms_client: FlaskClient,
) -> None:
    show(cms_client, "EGM-001", {"url": "https://t.example/scan/dup", "expiresAt": LATER})
    response = show(cms_client, "EGM-002", {"url": "https://t.example/scan/dup",
                                            "expiresAt": LATER})
    assert response.status_code == 409 and response.get_json()["code"] == "QR_TOKEN_ID_TAKEN"
    assert screen_qr(cms_client, "EGM-002")["qrTokenId"] is None
    assert screen_qr(cms_client, "EGM-001")["qrTokenId"] == "dup"


def test_an_unknown_egm_is_404_and_nothing_is_recorded(cms_client: FlaskClient) -> None:
    response = show(cms_client, "EGM-404", {"url": "https://t.example/scan/x", "expiresAt": LATER})
    assert response.status_code == 404 and response.get_json()["code"] == "EGM_NOT_FOUND"
    again = show(cms_client, "EGM-001", {"url": "https://t.example/scan/x", "expiresAt": LATER})
    assert again.status_code == 201  # the token id stayed free


@pytest.mark.parametrize(("body", "field"), [
    ({"url": "https://t.example/scan/a", "expiresAt": format_instant(START)}, "expiresAt"),
    ({"url": "https://t.example/scan/a", "expiresAt": "soon"}, "expiresAt"),
    ({"url": "https://t.example/scan/a"}, "expiresAt"),
    ({"expiresAt": LATER}, "url"),
    ({"url": "https://t.example/scan/\u00e9", "expiresAt": LATER}, "url"),
    ({"url": "https://t.example/", "expiresAt": LATER}, "qrTokenId"),
    ({"url": "https://t.example/scan/a", "expiresAt": LATER, "qrTokenId": "has space"},
     "qrTokenId"),
    ({"url": "https://t.example/scan/a", "expiresAt": LATER, "token": 7}, "token"),
    ({"url": "https://t.example/scan/a", "expiresAt": LATER, "colour": "red"}, "colour"),
])
def test_a_malformed_display_is_400_naming_the_field_and_changes_nothing(
    cms_client: FlaskClient, body: dict[str, Any], field: str,
) -> None:
    response = show(cms_client, "EGM-003", body)
    assert response.status_code == 400 and response.get_json()["field"] == field
    assert screen_qr(cms_client, "EGM-003")["qrTokenId"] is None


def test_the_route_needs_the_admin_token(cms_client: FlaskClient) -> None:
    response = show(cms_client, "EGM-001", {"url": "https://t.example/scan/a", "expiresAt": LATER},
                    headers={})
    assert response.status_code == 401 and "WWW-Authenticate" in response.headers
    assert screen_qr(cms_client, "EGM-001")["qrTokenId"] is None


def test_the_state_dump_reports_ledger_counts_and_balance(cms_client: FlaskClient) -> None:
    show(cms_client, "EGM-001", {"url": "https://t.example/scan/led", "expiresAt": LATER})
    before = cms_client.get("/_sim/state", headers=ADMIN).get_json()["ledger"]
    assert fund(cms_client, "led").status_code == 201
    after = cms_client.get("/_sim/state", headers=ADMIN).get_json()["ledger"]
    assert after["transactions"] == before["transactions"] + 1
    assert after["entries"] == before["entries"] + 2
    assert after["appliedTotal"] == before["appliedTotal"] + 500 and after["balanced"] is True
