"""EGMs through the CWS API (Bearer) and the control API (admin token).

Every refusal is checked for having changed nothing: the EGM as the API shows it, and the
audit chain's length (each accepted change adds exactly one record).
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sim_cms.audit import chain_length, verify_chain
from sim_cms.context import CmsContext
from sim_cms.models import Account
from tests.conftest import ADMIN_TOKEN, CmsFactory, cms_bearer

pytestmark = pytest.mark.db

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
STATES = ["IDLE", "IN_GAME", "DOOR_OPEN", "TILT", "OFFLINE"]


def ctx_of(app: Flask) -> CmsContext:
    context: CmsContext = app.extensions["sim_cms"]
    return context


def audit_length(app: Flask) -> int:
    with ctx_of(app).db.read() as session:
        return chain_length(session)


def egm(client: FlaskClient, egm_id: str = "EGM-001") -> dict[str, Any]:
    response = client.get(f"/cws/v1/egms/{egm_id}", headers=cms_bearer(client))
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


def control(client: FlaskClient, method: str, egm_id: str, body: Any = None, **kwargs: Any) -> Any:
    return client.open(f"/_sim/egms/{egm_id}", method=method, json=body,
                       headers=kwargs.pop("headers", ADMIN), **kwargs)


def assert_problem(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == code


def test_an_egm_reads_with_id_name_state_meter_cap_and_currency(cms_client: FlaskClient) -> None:
    assert egm(cms_client) == {"id": "EGM-001", "name": "Demo Slot 001", "state": "IDLE",
                               "creditMeter": 0, "creditLimit": 500000, "currency": "USD"}


def test_the_list_holds_the_ten_demo_egms_in_order(cms_client: FlaskClient) -> None:
    response = cms_client.get("/cws/v1/egms", headers=cms_bearer(cms_client))
    assert response.status_code == 200
    ids = [item["id"] for item in response.get_json()["egms"]]
    assert ids == [f"EGM-{n:03d}" for n in range(1, 11)]


def test_an_unknown_egm_is_404_egm_not_found(cms_client: FlaskClient) -> None:
    response = cms_client.get("/cws/v1/egms/EGM-404", headers=cms_bearer(cms_client))
    assert_problem(response, 404, "EGM_NOT_FOUND")


@pytest.mark.parametrize("path", ["/cws/v1/egms", "/cws/v1/egms/EGM-001"])
@pytest.mark.parametrize("auth", [None, "Bearer not-a-token", "Basic dHBhcy1jbGllbnQ6eA=="])
def test_egm_reads_need_a_valid_bearer_token(
    cms_client: FlaskClient, path: str, auth: str | None,
) -> None:
    headers = {"Authorization": auth} if auth else {}
    response = cms_client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("state", STATES)
def test_the_control_api_sets_every_state_and_audits_it(cms: Flask, state: str) -> None:
    client = cms.test_client()
    control(client, "POST", "EGM-002", {"state": "TILT" if state == "IDLE" else "IDLE"})
    before = audit_length(cms)
    response = control(client, "POST", "EGM-002", {"state": state})
    assert response.status_code == 200 and response.get_json()["state"] == state
    assert egm(client, "EGM-002")["state"] == state
    assert audit_length(cms) == before + 1
    with ctx_of(cms).db.read() as session:
        assert verify_chain(session).ok


def test_the_control_api_sets_state_and_cap_together(cms_client: FlaskClient) -> None:
    response = control(cms_client, "POST", "EGM-003", {"state": "IN_GAME", "creditLimit": 1234})
    assert response.status_code == 200
    assert egm(cms_client, "EGM-003") == {
        "id": "EGM-003", "name": "Demo Slot 003", "state": "IN_GAME", "creditMeter": 0,
        "creditLimit": 1234, "currency": "USD"}


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"state": "BROKEN"}, 400, "INVALID_STATE"),
    ({"state": "idle"}, 400, "INVALID_STATE"),
    ({"state": 3}, 400, "INVALID_STATE"),
    ({"state": None}, 400, "INVALID_STATE"),
    ({"creditLimit": None}, 400, "INVALID_CREDIT_LIMIT"),
    ({"state": "IDLE", "creditLimit": -1}, 400, "INVALID_CREDIT_LIMIT"),
    ({"creditLimit": 1.5}, 400, "INVALID_CREDIT_LIMIT"),
    ({"creditLimit": True}, 400, "INVALID_CREDIT_LIMIT"),
    ({"creditLimit": "100"}, 400, "INVALID_CREDIT_LIMIT"),
    ({"creditLimit": 2**63}, 400, "INVALID_CREDIT_LIMIT"),
    ({"state": "TILT", "creditMeter": 5}, 400, "INVALID_REQUEST"),
    ({}, 400, "INVALID_REQUEST"),
    ([], 400, "INVALID_REQUEST"),
    ("TILT", 400, "INVALID_REQUEST"),
])
def test_bad_control_changes_are_refused_and_change_nothing(
    cms: Flask, body: Any, status: int, code: str,
) -> None:
    client = cms.test_client()
    before, length = egm(client), audit_length(cms)
    assert_problem(control(client, "POST", "EGM-001", body), status, code)
    assert egm(client) == before and audit_length(cms) == length


def test_a_non_json_control_body_is_refused(cms: Flask) -> None:
    client = cms.test_client()
    before = egm(client)
    response = client.post("/_sim/egms/EGM-001", data="state=TILT", headers=ADMIN,
                           content_type="application/x-www-form-urlencoded")
    assert_problem(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    response = client.post("/_sim/egms/EGM-001", data="{", headers=ADMIN,
                           content_type="application/json")
    assert_problem(response, 400, "INVALID_REQUEST")
    assert egm(client) == before


def test_changing_an_unknown_egm_is_404_and_audits_nothing(cms: Flask) -> None:
    length = audit_length(cms)
    response = control(cms.test_client(), "POST", "EGM-404", {"state": "TILT"})
    assert_problem(response, 404, "EGM_NOT_FOUND")
    assert audit_length(cms) == length


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-admin-token"}])
def test_the_control_api_needs_the_admin_token(cms: Flask, headers: dict[str, str]) -> None:
    client = cms.test_client()
    for method, body in (("POST", {"state": "TILT"}), ("PUT", {"name": "x"}), ("GET", None)):
        response = control(client, method, "EGM-001", body, headers=headers)
        assert response.status_code == 401 and "WWW-Authenticate" in response.headers
    assert egm(client)["state"] == "IDLE"


def test_the_control_api_is_absent_without_an_admin_token(make_cms: CmsFactory) -> None:
    client = make_cms(admin_token=None).test_client()
    assert control(client, "POST", "EGM-001", {"state": "TILT"}).status_code == 404
    assert egm(client)["state"] == "IDLE"


def test_put_creates_an_idle_egm_with_an_empty_meter_and_its_account(cms: Flask) -> None:
    client = cms.test_client()
    length = audit_length(cms)
    response = control(client, "PUT", "EGM-042", {"name": "Lucky 42", "creditLimit": 250000})
    assert response.status_code == 201
    expected = {"id": "EGM-042", "name": "Lucky 42", "state": "IDLE", "creditMeter": 0,
                "creditLimit": 250000, "currency": "USD"}
    assert response.get_json() == expected
    assert egm(client, "EGM-042") == expected
    assert audit_length(cms) == length + 1
    with ctx_of(cms).db.read() as session:
        account = session.get(Account, "egm:EGM-042")
        assert account is not None and account.kind == "EGM_METER"


def test_put_on_an_existing_egm_renames_and_recaps_but_keeps_state(cms: Flask) -> None:
    client = cms.test_client()
    control(client, "POST", "EGM-005", {"state": "DOOR_OPEN"})
    response = control(client, "PUT", "EGM-005", {"name": "Renamed", "creditLimit": 100})
    assert response.status_code == 200
    assert egm(client, "EGM-005") == {"id": "EGM-005", "name": "Renamed", "state": "DOOR_OPEN",
                                      "creditMeter": 0, "creditLimit": 100, "currency": "USD"}


def test_put_defaults_name_to_the_id_and_cap_to_the_configured_default(
    cms_client: FlaskClient,
) -> None:
    assert control(cms_client, "PUT", "bar-7", {}).status_code == 201
    assert egm(cms_client, "bar-7")["name"] == "bar-7"
    assert egm(cms_client, "bar-7")["creditLimit"] == 500000


@pytest.mark.parametrize(("egm_id", "body", "code"), [
    ("-starts-with-dash", {"name": "x"}, "INVALID_EGM_ID"),
    ("x" * 65, {"name": "x"}, "INVALID_EGM_ID"),
    ("EGM-050", {"name": ""}, "INVALID_REQUEST"),
    ("EGM-050", {"name": 5}, "INVALID_REQUEST"),
    ("EGM-050", {"name": "x" * 201}, "INVALID_REQUEST"),
    ("EGM-050", {"creditLimit": -5}, "INVALID_CREDIT_LIMIT"),
    ("EGM-050", {"name": "x", "state": "TILT"}, "INVALID_REQUEST"),
    ("EGM-050", ["name"], "INVALID_REQUEST"),
])
def test_bad_egm_definitions_are_refused_and_create_nothing(
    cms: Flask, egm_id: str, body: Any, code: str,
) -> None:
    client = cms.test_client()
    length = audit_length(cms)
    assert_problem(control(client, "PUT", egm_id, body), 400, code)
    listed = client.get("/_sim/egms", headers=ADMIN).get_json()["egms"]
    assert len(listed) == 10 and audit_length(cms) == length


def test_control_list_and_state_dump_show_meters_states_and_qr(cms_client: FlaskClient) -> None:
    control(cms_client, "POST", "EGM-010", {"state": "OFFLINE"})
    listed = cms_client.get("/_sim/egms", headers=ADMIN).get_json()["egms"]
    assert [item["id"] for item in listed][-1] == "EGM-010"
    last = listed[-1]
    assert last["state"] == "OFFLINE" and last["creditMeter"] == 0
    assert set(last["qr"]) == {"qrTokenId", "url", "expiresAt", "rotatesAt", "error",
                               "failures", "retryInS"}
    dump = cms_client.get("/_sim/state", headers=ADMIN).get_json()
    assert dump["egms"] == listed and dump["casino"] == "Demo Casino"
    single = cms_client.get("/_sim/egms/EGM-010", headers=ADMIN)
    assert single.status_code == 200 and single.get_json() == last
    assert_problem(cms_client.get("/_sim/egms/EGM-404", headers=ADMIN), 404, "EGM_NOT_FOUND")


def test_a_created_egm_gets_qr_codes_like_the_configured_ones(make_cms: CmsFactory) -> None:
    app = make_cms(with_trustly=True)
    client = app.test_client()
    assert control(client, "PUT", "EGM-077", {"name": "New"}).status_code == 201
    response = client.post("/cws/v1/egms/EGM-077/qr", headers=cms_bearer(client))
    assert response.status_code == 200 and response.get_json()["egmId"] == "EGM-077"


def test_rotate_now_through_the_control_api(make_cms: CmsFactory) -> None:
    app = make_cms(with_trustly=True)
    client = app.test_client()
    response = client.post("/_sim/qr/rotate", headers=ADMIN)
    assert response.status_code == 200
    assert response.get_json() == {"acquired": [f"EGM-{n:03d}" for n in range(1, 11)],
                                   "failed": {}}
    assert client.post("/_sim/qr/rotate", headers=ADMIN).get_json()["acquired"] == []
