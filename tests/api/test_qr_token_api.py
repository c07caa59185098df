"""The QR Code API as a CMS sees it: every refusal is a 4xx with a stable code and no effect."""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, make_url, select

from sim_trustly.auth_service.issuance import JUST_ISSUED_S, flush_issued, just_issued, new_code
from sim_trustly.auth_service.verifier import verify_presented_token
from sim_trustly.models import AuthLockout, QrTokenRow
from simkit.clock import ManualClock, format_instant
from tests.conftest import ADMIN_TOKEN, DEMO_AUTH, START, TrustlyFactory, basic

pytestmark = pytest.mark.db

TOKEN_PATH = "/auth-service/api/oauth2/qrcode/token"
BODY = {"merchantId": "demo-merchant", "egmId": "EGM-001"}


def post_token(client: FlaskClient, body: Any = None, *, auth: str | None = DEMO_AUTH,
               raw: bytes | None = None, content_type: str = "application/json") -> Any:
    headers = {"Authorization": auth} if auth is not None else {}
    data = raw if raw is not None else json.dumps(BODY if body is None else body).encode()
    return client.post(TOKEN_PATH, data=data, headers=headers, content_type=content_type)


def issued_count(app: Flask) -> int:
    db = app.extensions["sim_trustly"].db
    flush_issued(db)  # issued tokens are stored by a background writer
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(QrTokenRow)) or 0)


def error_of(response: Any) -> dict[str, Any]:
    body = response.get_json()
    assert isinstance(body["errors"], list) and len(body["errors"]) == 1
    item: dict[str, Any] = body["errors"][0]
    assert isinstance(item["code"], int) and item["message"]
    return item


def add_merchant(client: FlaskClient, merchant_id: str, access_id: str, key: str,
                 **extra: Any) -> None:
    body = {"merchantId": merchant_id, "accessId": access_id, "accessKey": key, **extra}
    response = client.post("/_sim/merchants", json=body,
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 201


def test_demo_credentials_get_url_token_and_expiry(trustly: Flask, client: FlaskClient) -> None:
    response = post_token(client)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"url", "token", "expiresAt"}
    prefix = "http://127.0.0.1:8710/scan/"
    assert body["url"].startswith(prefix)
    assert len(body["url"][len(prefix):]) == 22  # 128-bit base64url code
    assert body["expiresAt"] == format_instant(START + timedelta(seconds=300))
    ctx = trustly.extensions["sim_trustly"]
    claims = verify_presented_token(ctx.db, ctx.settings, ctx.clock, body["token"],
                                    merchant_id="demo-merchant", egm_id="EGM-001")
    assert claims.jti == body["url"][len(prefix):]
    assert issued_count(trustly) == 1


def test_missing_authorization_is_401_with_challenge(trustly: Flask, client: FlaskClient) -> None:
    response = post_token(client, auth=None)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert error_of(response)["reason"] == "AUTHENTICATION_FAILED"
    assert error_of(response)["code"] == 300
    assert issued_count(trustly) == 0


MALFORMED_AUTH = [
    "Basic",
    "Basic ",
    "Basic !!!not-base64!!!",
    "Bearer demo-access-id:demo-access-key",
    "Digest username=demo",
    "Basic " + base64.b64encode(b"no-colon-here").decode(),
    "Basic " + base64.b64encode(b":demo-access-key").decode(),
    "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
    "Basic " + base64.b64encode(b"demo-access-id\n:demo-access-key").decode(),
    "Basic " + "A" * 5000,
    "basic" + base64.b64encode(b"demo-access-id:demo-access-key").decode(),
    "Basic ZGVtby1hY2Nlc3MtaWQ6ZGVtby1hY2Nlc3Mta2V5===",
]


@pytest.mark.parametrize("header", MALFORMED_AUTH)
def test_malformed_authorization_is_401_never_5xx(
    trustly: Flask, client: FlaskClient, header: str
) -> None:
    response = post_token(client, auth=header)
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers
    assert error_of(response)["reason"] == "AUTHENTICATION_FAILED"
    assert issued_count(trustly) == 0


@pytest.mark.parametrize(("access_id", "key"), [
    ("unknown-access-id", "demo-access-key"),
    ("demo-access-id", "wrong-access-key"),
    ("demo-access-id", ""),
    ("DEMO-ACCESS-ID", "demo-access-key"),
])
def test_wrong_credentials_are_401(
    trustly: Flask, client: FlaskClient, access_id: str, key: str
) -> None:
    response = post_token(client, auth=basic(access_id, key))
    assert response.status_code == 401
    assert error_of(response) | {"message": ""} == {
        "domain": "auth-service", "code": 300, "message": "", "reason": "AUTHENTICATION_FAILED"}
    assert issued_count(trustly) == 0


@pytest.mark.parametrize(("body", "reason", "field"), [
    ({"egmId": "EGM-001"}, "MISSING_FIELD", "merchantId"),
    ({"merchantId": "demo-merchant"}, "MISSING_FIELD", "egmId"),
    ({"merchantId": 42, "egmId": "EGM-001"}, "INVALID_FIELD", "merchantId"),
    ({"merchantId": "demo-merchant", "egmId": None}, "MISSING_FIELD", "egmId"),
    ({"merchantId": "demo-merchant", "egmId": ""}, "INVALID_FIELD", "egmId"),
    ({"merchantId": "demo-merchant", "egmId": ["EGM-001"]}, "INVALID_FIELD", "egmId"),
    ({"merchantId": "demo-merchant", "egmId": {"id": 1}}, "INVALID_FIELD", "egmId"),
    ({"merchantId": "demo-merchant", "egmId": True}, "INVALID_FIELD", "egmId"),
    ({"merchantId": "demo-merchant", "egmId": "E" * 65}, "INVALID_FIELD", "egmId"),
    ({"merchantId": "demo-merchant", "egmId": "EGM 001"}, "INVALID_FIELD", "egmId"),
    ({"merchantId": "demo-merchant", "egmId": "EGM-001", "locationId": 7},
     "INVALID_FIELD", "locationId"),
])
def test_bad_body_fields_are_400_naming_the_field(
    trustly: Flask, client: FlaskClient, body: dict[str, Any], reason: str, field: str
) -> None:
    response = post_token(client, body)
    assert response.status_code == 400
    item = error_of(response)
    assert (item["code"], item["reason"], item["field"]) == (200, reason, field)
    assert issued_count(trustly) == 0


@pytest.mark.parametrize("raw", [b"not json", b"{\"merchantId\": ", b"[1, 2]", b"\"text\"",
                                 b"{\"merchantId\": NaN}", b"\xff\xfe", b""])
def test_non_json_or_non_object_body_is_400(
    trustly: Flask, client: FlaskClient, raw: bytes
) -> None:
    response = post_token(client, raw=raw)
    assert response.status_code == 400
    assert error_of(response)["reason"] == "INVALID_REQUEST"
    assert issued_count(trustly) == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "application/xml"])
def test_non_json_media_type_is_415(
    trustly: Flask, client: FlaskClient, content_type: str
) -> None:
    response = post_token(client, content_type=content_type)
    assert response.status_code == 415
    assert error_of(response)["reason"] == "UNSUPPORTED_MEDIA_TYPE"
    assert issued_count(trustly) == 0


def test_oversized_body_is_413(trustly: Flask, client: FlaskClient) -> None:
    response = post_token(client, {**BODY, "padding": "x" * 20_000})
    assert response.status_code == 413
    assert error_of(response)["reason"] == "PAYLOAD_TOO_LARGE"
    assert issued_count(trustly) == 0


def test_unknown_merchant_is_403(trustly: Flask, client: FlaskClient) -> None:
    response = post_token(client, {"merchantId": "no-such-merchant", "egmId": "EGM-001"})
    assert response.status_code == 403
    assert error_of(response)["reason"] == "MERCHANT_NOT_ALLOWED"
    assert error_of(response)["code"] == 310
    assert issued_count(trustly) == 0


def test_other_merchants_id_is_403(trustly: Flask, client: FlaskClient) -> None:
    add_merchant(client, "other-casino", "other-access-id", "other-access-key-123")
    response = post_token(client, {"merchantId": "other-casino", "egmId": "EGM-001"})
    assert response.status_code == 403
    assert error_of(response)["reason"] == "MERCHANT_NOT_ALLOWED"
    assert issued_count(trustly) == 0
    own = post_token(client, {"merchantId": "other-casino", "egmId": "EGM-001"},
                     auth=basic("other-access-id", "other-access-key-123"))
    assert own.status_code == 200


def test_get_on_token_endpoint_is_405_in_trustly_dialect(client: FlaskClient) -> None:
    response = client.get(TOKEN_PATH)
    assert response.status_code == 405
    assert error_of(response)["reason"] == "METHOD_NOT_ALLOWED"


def lockouts(app: Flask) -> int:
    with app.extensions["sim_trustly"].db.read() as session:
        return int(session.scalar(select(func.count()).select_from(AuthLockout)) or 0)


def test_repeated_failures_lock_the_access_id_with_retry_after(
    trustly: Flask, client: FlaskClient, clock: ManualClock
) -> None:
    wrong = basic("demo-access-id", "guess")
    for _ in range(4):
        assert post_token(client, auth=wrong).status_code == 401
    fifth = post_token(client, auth=wrong)
    assert fifth.status_code == 401
    locked = post_token(client)  # even the right key is refused while locked
    assert locked.status_code == 429
    assert locked.headers["Retry-After"] == "60"
    assert error_of(locked) | {"message": ""} == {
        "domain": "auth-service", "code": 375, "message": "", "reason": "TOO_MANY_ATTEMPTS"}
    assert issued_count(trustly) == 0
    clock.advance(45)
    assert post_token(client).headers["Retry-After"] == "15"
    clock.advance(15)
    assert post_token(client).status_code == 200
    assert lockouts(trustly) == 0  # success forgets the failures


def test_lockout_is_per_access_id(trustly: Flask, client: FlaskClient) -> None:
    add_merchant(client, "other-casino", "other-access-id", "other-access-key-123")
    for _ in range(5):
        post_token(client, auth=basic("other-access-id", "guess"))
    assert post_token(client).status_code == 200


def test_failures_outside_the_window_do_not_lock(
    client: FlaskClient, clock: ManualClock
) -> None:
    wrong = basic("demo-access-id", "guess")
    for _ in range(4):
        post_token(client, auth=wrong)
    clock.advance(61)
    post_token(client, auth=wrong)
    assert post_token(client).status_code == 200


def test_per_merchant_lifetime_and_epoch_expiry(client: FlaskClient) -> None:
    add_merchant(client, "fast-casino", "fast-id", "fast-access-key-1",
                 tokenLifetimeS=60, expiresAtFormat="epoch_ms")
    response = post_token(client, {"merchantId": "fast-casino", "egmId": "EGM-9"},
                          auth=basic("fast-id", "fast-access-key-1"))
    assert response.status_code == 200
    assert response.get_json()["expiresAt"] == int((START.timestamp() + 60) * 1000)


def test_location_id_is_accepted(client: FlaskClient) -> None:
    response = post_token(client, {**BODY, "locationId": "FLOOR-2"})
    assert response.status_code == 200


@contextlib.contextmanager
def inserts_blocked(url: str) -> Iterator[None]:
    """Hold what stops any insert into qr_tokens (another writer in the middle of a long
    transaction, as a busy or stalled database would be): SQLite's write lock, or on
    PostgreSQL a lock on the table that still lets readers in."""
    if url.startswith("sqlite"):
        path = make_url(url).database
        assert path is not None
        held = sqlite3.connect(path, isolation_level=None)
        held.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            held.execute("ROLLBACK")
            held.close()
        return
    with psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(
            hide_password=False)) as connection:
        connection.execute("LOCK TABLE qr_tokens IN SHARE MODE")
        yield
        connection.rollback()


def test_another_worker_finds_a_code_whose_row_is_still_on_its_way(
    make_trustly: TrustlyFactory,
) -> None:
    """The CMS shows the url the moment it has it and a phone may pay it the next moment, in
    any worker process, while the issuing worker's batch writer is still held up by other
    writers: the lookup waits for the row (a second here) instead of calling it unknown."""
    issuer = make_trustly()
    url = issuer.extensions["sim_trustly"].settings.database_url
    other_worker = make_trustly(database_url=url)  # its own engine, pool and batch writer
    scans: list[Any] = []
    with inserts_blocked(url):
        answer = post_token(issuer.test_client())  # answered; its row cannot be stored yet
        assert answer.status_code == 200
        code = answer.get_json()["url"].rsplit("/", 1)[-1]
        scanning = threading.Thread(
            target=lambda: scans.append(other_worker.test_client().get(f"/api/v1/scan/{code}")))
        scanning.start()
        scanning.join(timeout=1.0)  # the other writers keep the row out for a second
        assert not scans, "the scan gave up while the row was still on its way"
    scanning.join(timeout=30)
    assert [s.status_code for s in scans] == [200], [s.get_data(as_text=True) for s in scans]
    assert scans[0].get_json()["egmId"] == BODY["egmId"]


def test_a_code_is_waited_for_even_when_the_sims_clock_moved_on_since_it_was_issued(
    make_trustly: TrustlyFactory, clock: ManualClock,
) -> None:
    """The wait is for the batch writer, which runs in real time: a test or an operator that
    moves the sim's clock on right after the QR was issued (here to a second before its
    expiry) must not turn a code still on its way into an unknown one."""
    issuer = make_trustly()
    url = issuer.extensions["sim_trustly"].settings.database_url
    other_worker = make_trustly(database_url=url)
    scans: list[Any] = []
    with inserts_blocked(url):
        answer = post_token(issuer.test_client())
        assert answer.status_code == 200
        code = answer.get_json()["url"].rsplit("/", 1)[-1]
        clock.advance(299)
        scanning = threading.Thread(
            target=lambda: scans.append(other_worker.test_client().get(f"/api/v1/scan/{code}")))
        scanning.start()
        scanning.join(timeout=1.0)
        assert not scans, "the scan gave up while the row was still on its way"
    scanning.join(timeout=30)
    assert [s.status_code for s in scans] == [200], [s.get_data(as_text=True) for s in scans]


def test_only_codes_stamped_in_the_last_seconds_are_waited_for() -> None:
    """A lookup that misses waits only for a code this Trustly issued a moment ago; a code it
    never issued (a guess, a typo, a code from elsewhere) is answered at once."""
    now = START
    code = new_code(now)
    assert len(code) == 22 and code != new_code(now)
    assert just_issued(code, now)
    assert just_issued(code, now + timedelta(seconds=JUST_ISSUED_S))
    assert not just_issued(code, now + timedelta(seconds=JUST_ISSUED_S + 1))
    assert not just_issued(code, now - timedelta(seconds=1))  # stamped in the future
    assert not just_issued(new_code(now - timedelta(days=1)), now)
    for other in ("A" * 22, "not-a-code", "", "A" * 23, base64.urlsafe_b64encode(b"x" * 16)
                  .decode().rstrip("=")):
        assert not just_issued(other, now), other
