"""No input to the control API, and no clock position it allows, makes either sim answer 5xx.

On PostgreSQL a NUL character or a value longer than its column fails inside the database;
these tests send each such value to every control route that takes text and expect a 4xx
with a stable code. They run on SQLite and, when SCANPAY_TEST_DATABASE_URL is set, on
PostgreSQL, where the defects showed.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from simkit.clock import EARLIEST, LATEST, ManualClock, format_instant
from tests.api.tpas_support import CasinoFactory, make_casino
from tests.conftest import ADMIN_TOKEN, CMS_AUTH, DEMO_AUTH, START, CmsFactory, TrustlyFactory

pytestmark = pytest.mark.db
__all__ = ["make_casino"]  # the fixture, used by name

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TOKEN_PATH = "/auth-service/api/oauth2/qrcode/token"
NUL = "x\x00y"
SURROGATE = "x\ud800y"
MERCHANT = {"merchantId": "m-inputs", "accessId": "a-inputs", "accessKey": "k-inputs",
            "name": "Inputs Casino"}


def reason(response: Any) -> str:
    """The stable code of an error in either dialect (Trustly's `reason`, the CMS's `code`)."""
    body = response.get_json()
    return str(body["errors"][0]["reason"] if "errors" in body else body["code"])


def assert_refused(response: Any) -> str:
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data())
    return reason(response)


@pytest.fixture
def trustly_admin(make_trustly: TrustlyFactory) -> FlaskClient:
    return make_trustly().test_client()


@pytest.fixture
def cms_admin(make_cms: CmsFactory) -> FlaskClient:
    return make_cms().test_client()


# --- sim_trustly: merchants and signing keys --------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("merchantId", NUL), ("merchantId", SURROGATE), ("merchantId", "m" * 65),
    ("accessId", NUL), ("accessId", "a" * 129), ("accessKey", NUL),
    ("name", NUL), ("name", "n" * 201),
])
def test_a_merchant_field_that_cannot_be_stored_is_a_400(
    trustly_admin: FlaskClient, field: str, value: str,
) -> None:
    response = trustly_admin.post("/_sim/merchants", json={**MERCHANT, field: value},
                                  headers=ADMIN)
    assert assert_refused(response) in ("INVALID_FIELD", "INVALID_CHARACTERS")
    assert response.get_json()["errors"][0]["field"] == field


def test_a_merchant_at_every_column_limit_is_stored(trustly_admin: FlaskClient) -> None:
    body = {"merchantId": "m" * 64, "accessId": "a" * 128, "accessKey": "k" * 300,
            "name": "n" * 200}
    assert trustly_admin.post("/_sim/merchants", json=body, headers=ADMIN).status_code == 201


@pytest.mark.parametrize("kid", [NUL, SURROGATE, "k" * 65])
def test_a_signing_key_id_that_cannot_be_stored_is_a_400(
    trustly_admin: FlaskClient, kid: str,
) -> None:
    response = trustly_admin.post("/_sim/signing-keys", json={"kid": kid}, headers=ADMIN)
    assert assert_refused(response) in ("INVALID_FIELD", "INVALID_CHARACTERS")


@pytest.mark.parametrize(("method", "path"), [
    ("DELETE", "/_sim/signing-keys/k%00"),
    ("DELETE", "/_sim/signing-keys/" + "k" * 300),
    ("GET", "/_sim/payments/p%00"),
    ("GET", "/_sim/payments?merchantId=m%00"),
    ("GET", "/_sim/journal?path=/x%00"),
    ("GET", "/_sim/journal?correlationId=c%00"),
])
def test_trustly_control_paths_and_queries_with_unstorable_text_are_4xx(
    trustly_admin: FlaskClient, method: str, path: str,
) -> None:
    assert_refused(trustly_admin.open(path, method=method, headers=ADMIN))


def test_a_fault_rule_with_a_nul_in_its_path_is_a_400(trustly_admin: FlaskClient) -> None:
    rule = {"method": "POST", "path": "/x\x00", "action": "status", "status": 503}
    response = trustly_admin.post("/_sim/faults", json=rule, headers=ADMIN)
    assert assert_refused(response) == "INVALID_CHARACTERS"


# --- sim_cms: EGMs and the QR display ---------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/_sim/egms/E%00", None),
    ("PUT", "/_sim/egms/E%00", {"name": "x"}),
    ("PUT", "/_sim/egms/" + "E" * 65, {"name": "x"}),
    ("PUT", "/_sim/egms/EGM-900", {"name": NUL}),
    ("PUT", "/_sim/egms/EGM-900", {"name": SURROGATE}),
    ("POST", "/_sim/egms/E%00", {"state": "IDLE"}),
    ("POST", "/_sim/egms/E%00/qr-display",
     {"url": "http://t/qr/1", "expiresAt": "2026-11-25T21:10:00Z"}),
    ("POST", "/_sim/egms/EGM-001/qr-display",
     {"url": "http://t/qr/1", "expiresAt": "2026-11-25T21:10:00Z", "token": NUL}),
    ("POST", "/_sim/egms/EGM-001/qr-display",
     {"url": "http://t/qr/1", "expiresAt": "2026-11-25T21:10:00Z", "qrTokenId": NUL}),
    ("GET", "/_sim/fundings?since=2026%00", None),
])
def test_cms_control_inputs_that_cannot_be_stored_are_4xx(
    cms_admin: FlaskClient, method: str, path: str, body: Any,
) -> None:
    assert_refused(cms_admin.open(path, method=method, json=body, headers=ADMIN))


# --- the clock's range ------------------------------------------------------------------------


@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                                     "1999-12-31T23:59:59Z", "2201-01-01T00:00:00Z"])
def test_setting_the_clock_outside_its_range_is_a_400_and_moves_nothing(
    trustly_admin: FlaskClient, cms_admin: FlaskClient, clock: ManualClock, instant: str,
) -> None:
    for admin in (trustly_admin, cms_admin):
        response = admin.post("/_sim/clock", json={"set": instant}, headers=ADMIN)
        assert assert_refused(response) == "CLOCK_OUT_OF_RANGE"
    assert clock.now() == START


def test_an_advance_past_the_range_is_a_400_and_moves_nothing(
    trustly_admin: FlaskClient, clock: ManualClock,
) -> None:
    clock.set(LATEST)
    response = trustly_admin.post("/_sim/clock", json={"advance": 1}, headers=ADMIN)
    assert assert_refused(response) == "CLOCK_OUT_OF_RANGE"
    assert clock.now() == LATEST


def pay_qr_token(trustly_client: FlaskClient) -> Any:
    return trustly_client.post(TOKEN_PATH, json={"merchantId": "demo-merchant",
                                                 "egmId": "EGM-001"},
                               headers={"Authorization": DEMO_AUTH})


@pytest.mark.parametrize("edge", [EARLIEST, LATEST], ids=["earliest", "latest"])
def test_public_token_endpoints_answer_at_both_ends_of_the_clock_range(
    pay_pair: tuple[Flask, Flask], edge: Any,
) -> None:
    trustly_app, cms_app = pay_pair
    trustly_client, cms_client = trustly_app.test_client(), cms_app.test_client()
    moved = trustly_client.post("/_sim/clock", json={"set": format_instant(edge)},
                                headers=ADMIN)
    assert moved.status_code == 200, moved.get_data()
    assert moved.get_json()["now"] == format_instant(edge)
    issued = pay_qr_token(trustly_client)
    assert issued.status_code == 200, issued.get_data()
    assert issued.get_json()["expiresAt"].startswith(str(edge.year) if edge == EARLIEST
                                                     else "2201-")
    oauth = cms_client.post("/cws/v1/oauth/token", data={"grant_type": "client_credentials"},
                            headers={"Authorization": CMS_AUTH})
    assert oauth.status_code == 200, oauth.get_data()
    rotated = cms_client.post("/_sim/qr/rotate", headers=ADMIN)
    assert rotated.status_code == 200 and rotated.get_json()["failed"] == {}
    assert cms_client.get("/egm/EGM-001").status_code == 200


@pytest.mark.parametrize("edge", [EARLIEST, LATEST], ids=["earliest", "latest"])
def test_a_payment_is_credited_at_both_ends_of_the_clock_range(
    make_casino: CasinoFactory, clock: ManualClock, edge: Any,
) -> None:
    clock.set(edge)
    casino = make_casino()
    view = casino.pay(casino.show_qr())
    assert view.status == "CREDITED", view
    assert casino.meter() == 2000
