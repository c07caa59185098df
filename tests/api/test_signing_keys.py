"""Key rotation through the control API, token lifetimes on the injected clock, weak keys."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sim_trustly.auth_service.tokens import ExpiredQrToken, InvalidQrToken, WeakSigningKey
from sim_trustly.auth_service.verifier import verify_presented_token
from sim_trustly.settings import SigningKeyConfig
from simkit.clock import ManualClock, parse_instant
from tests.conftest import ADMIN_TOKEN, DEMO_AUTH, START, TrustlyFactory

pytestmark = pytest.mark.db

TOKEN_PATH = "/auth-service/api/oauth2/qrcode/token"
BODY = {"merchantId": "demo-merchant", "egmId": "EGM-001"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def issue(client: FlaskClient) -> dict[str, str]:
    response = client.post(TOKEN_PATH, json=BODY, headers={"Authorization": DEMO_AUTH})
    assert response.status_code == 200
    body: dict[str, str] = response.get_json()
    return body


def verify(app: Flask, token: str, egm_id: str = "EGM-001") -> object:
    ctx = app.extensions["sim_trustly"]
    return verify_presented_token(ctx.db, ctx.settings, ctx.clock, token,
                                  merchant_id="demo-merchant", egm_id=egm_id)


def kid_of(token: str) -> str:
    import base64
    header = token.split(".", maxsplit=1)[0]
    kid: str = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    return kid


def test_lifetime_is_the_configured_one_and_expiry_follows_the_clock(
    make_trustly: TrustlyFactory, clock: ManualClock
) -> None:
    app = make_trustly(token_lifetime_s=120, leeway_s=30)
    body = issue(app.test_client())
    claims = verify(app, body["token"])
    assert claims.expires_at - claims.issued_at == timedelta(seconds=120)  # type: ignore[attr-defined]
    expires_at = parse_instant(body["expiresAt"])
    clock.set(expires_at - timedelta(seconds=1))
    verify(app, body["token"])
    clock.set(expires_at + timedelta(seconds=31))
    with pytest.raises(ExpiredQrToken):
        verify(app, body["token"])


def test_token_does_not_verify_for_another_egm(trustly: Flask, client: FlaskClient) -> None:
    token = issue(client)["token"]
    with pytest.raises(InvalidQrToken):
        verify(trustly, token, egm_id="EGM-002")


def test_rotation_signs_with_the_new_key_and_old_tokens_keep_verifying(
    trustly: Flask, client: FlaskClient, clock: ManualClock
) -> None:
    old = issue(client)["token"]
    response = client.post("/_sim/signing-keys", json={"kid": "2026-12"}, headers=ADMIN)
    assert response.status_code == 201
    new = issue(client)["token"]
    assert kid_of(new) == "2026-12" and kid_of(old) != "2026-12"
    verify(trustly, old)
    verify(trustly, new)
    keys = client.get("/_sim/signing-keys", headers=ADMIN).get_json()["keys"]
    assert [k["active"] for k in keys if k["kid"] == "2026-12"] == [True]
    assert all("secret" not in k for k in keys)


def test_removed_key_stops_its_tokens_at_once(trustly: Flask, client: FlaskClient) -> None:
    old = issue(client)["token"]
    client.post("/_sim/signing-keys", json={"kid": "next"}, headers=ADMIN)
    removed = client.delete(f"/_sim/signing-keys/{kid_of(old)}", headers=ADMIN)
    assert removed.status_code == 200
    with pytest.raises(InvalidQrToken) as caught:
        verify(trustly, old)
    assert caught.value.reason == "unknown_kid"


def test_active_key_cannot_be_removed(client: FlaskClient) -> None:
    kid = kid_of(issue(client)["token"])
    response = client.delete(f"/_sim/signing-keys/{kid}", headers=ADMIN)
    assert response.status_code == 409
    assert response.get_json()["errors"][0]["reason"] == "SIGNING_KEY_ACTIVE"


def test_rotation_to_a_weak_secret_is_refused(client: FlaskClient) -> None:
    response = client.post("/_sim/signing-keys", json={"kid": "weak", "secret": "short"},
                           headers=ADMIN)
    assert response.status_code == 400
    assert "32" in response.get_json()["errors"][0]["message"]
    assert len(client.get("/_sim/signing-keys", headers=ADMIN).get_json()["keys"]) == 1


def test_configured_keys_sign_and_a_weak_one_stops_start_up(
    make_trustly: TrustlyFactory
) -> None:
    strong = SigningKeyConfig(kid="conf-1", alg="HS256", secret=b"s" * 32)
    app = make_trustly(signing_keys=(strong,))
    assert kid_of(issue(app.test_client())["token"]) == "conf-1"
    weak = SigningKeyConfig(kid="conf-weak", alg="HS256", secret=b"s" * 31)
    with pytest.raises(WeakSigningKey, match="32"):
        make_trustly(signing_keys=(weak,))


def test_control_api_requires_the_admin_token(client: FlaskClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": DEMO_AUTH}):
        response = client.post("/_sim/signing-keys", json={"kid": "x"}, headers=headers)
        assert response.status_code == 401
        assert "WWW-Authenticate" in response.headers
    assert len(client.get("/_sim/signing-keys", headers=ADMIN).get_json()["keys"]) == 1


def test_control_api_is_absent_without_an_admin_token(make_trustly: TrustlyFactory) -> None:
    app = make_trustly(admin_token=None)
    response = app.test_client().get("/_sim/signing-keys", headers=ADMIN)
    assert response.status_code == 404


def test_issued_at_is_the_clock_time(trustly: Flask, client: FlaskClient) -> None:
    claims = verify(trustly, issue(client)["token"])
    assert claims.issued_at == START  # type: ignore[attr-defined]
