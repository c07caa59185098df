"""Who may call what on the CWS API: every endpoint against every client, by scope.

An allowed call is not refused for its scope (it gets the endpoint's own answer); a denied
one gets 403 INSUFFICIENT_SCOPE and changes nothing: above all, TPAS's client cannot lift a
self-exclusion (a daily limit of 0 stays 0). The funding fast path, which checks Bearer
tokens below Flask, refuses a token without the `fundings` scope the same way.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from sim_cms import scopes
from sim_cms.models import DailyLimit, Egm, FundingRecord, LedgerEntry, QrDisplay, QrState
from sim_cms.openapi import build_document
from sim_cms.settings import DEMO_CLIENT, DEMO_DESK_CLIENT, ClientConfig, load_cms_settings
from simkit.settings import ConfigError
from tests.api.test_funding_api import display_qr, funding, own_qr
from tests.conftest import CMS_TEST_CLIENT, CmsFactory, basic, cms_bearer

pytestmark = pytest.mark.db

TOKEN_PATH = "/cws/v1/oauth/token"
EXCLUDED = "ubai-excluded"  # self-excluded: daily limit 0
NO_SCOPES = ClientConfig("no-scopes", "no-scopes-secret", scopes=())


@dataclass(frozen=True)
class Caller:
    """A client, optionally asking for a subset of its scopes, and the scopes it ends up with."""

    client: ClientConfig
    scope: str | None
    granted: frozenset[str]


CALLERS: dict[str, Caller] = {
    "tpas": Caller(DEMO_CLIENT, None, frozenset(DEMO_CLIENT.scopes)),
    "desk": Caller(DEMO_DESK_CLIENT, None, frozenset(DEMO_DESK_CLIENT.scopes)),
    "no-scopes": Caller(NO_SCOPES, None, frozenset()),
    "all-but-asked-fundings-only": Caller(
        ClientConfig(*CMS_TEST_CLIENT, scopes=tuple(scopes.SCOPES)), "fundings",
        frozenset({scopes.FUNDINGS})),
}


@dataclass(frozen=True)
class Call:
    """One operation of the CWS API as a client sends it, and the scope it needs."""

    method: str
    path: str
    scope: str
    body: dict[str, Any] | None = None


ENDPOINTS: dict[str, Call] = {
    "create-funding": Call("POST", "/cws/v1/fundings", scopes.FUNDINGS, funding("tx-scoped")),
    "get-funding": Call("GET", "/cws/v1/fundings/tx-never", scopes.FUNDINGS),
    "get-limit": Call("GET", f"/cws/v1/limits/{EXCLUDED}", scopes.LIMITS_READ),
    "put-limit": Call("PUT", f"/cws/v1/limits/{EXCLUDED}", scopes.LIMITS_WRITE,
                      {"dailyLimit": 1_000_000}),
    "patch-limit": Call("PATCH", f"/cws/v1/limits/{EXCLUDED}", scopes.LIMITS_WRITE,
                        {"dailyLimit": 1_000_000}),
    "delete-limit": Call("DELETE", f"/cws/v1/limits/{EXCLUDED}", scopes.LIMITS_WRITE),
    "list-egms": Call("GET", "/cws/v1/egms", scopes.EGMS),
    "get-egm": Call("GET", "/cws/v1/egms/EGM-001", scopes.EGMS),
    "acquire-qr": Call("POST", "/cws/v1/egms/EGM-001/qr", scopes.EGMS),
}
# The Flask rule of each entry above, to prove the table covers every CWS operation.
RULES = {
    ("POST", "/cws/v1/fundings"), ("GET", "/cws/v1/fundings/<transaction_id>"),
    *((m, "/cws/v1/limits/<ubai>") for m in ("GET", "PUT", "PATCH", "DELETE")),
    ("GET", "/cws/v1/egms"), ("GET", "/cws/v1/egms/<egm_id>"),
    ("POST", "/cws/v1/egms/<egm_id>/qr"),
}


def token_of(client: FlaskClient, caller: Caller) -> dict[str, str]:
    """Bearer headers of a token the caller's client was issued (asking for `scope`)."""
    form = {"grant_type": "client_credentials"}
    if caller.scope is not None:
        form["scope"] = caller.scope
    response = client.post(TOKEN_PATH, data=form, headers={
        "Authorization": basic(caller.client.client_id, caller.client.client_secret)})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert scopes.parse(response.get_json()["scope"]) == caller.granted
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def state(app: Flask) -> dict[str, Any]:
    """Everything a CWS call may change: limits, meters, fundings, ledger, QRs on show."""
    with app.extensions["sim_cms"].db.read() as session:
        return {
            "limits": {r.ubai: r.daily_limit for r in session.scalars(select(DailyLimit))},
            "meters": {r.id: r.credit_meter for r in session.scalars(select(Egm))},
            "fundings": sorted(r.transaction_id for r in session.scalars(select(FundingRecord))),
            "entries": len(session.scalars(select(LedgerEntry)).all()),
            "shown": sorted(r.qr_token_id for r in session.scalars(select(QrDisplay))),
            "qr": {r.egm_id: r.current_qr_token_id for r in session.scalars(select(QrState))},
        }


def send(client: FlaskClient, call: Call, headers: dict[str, str]) -> TestResponse:
    return client.open(call.path, method=call.method, headers=headers, json=call.body)


@pytest.fixture
def floor(make_cms: CmsFactory) -> Flask:
    """The demo casino with every caller's client, Trustly wired in, a self-excluded UBAI and
    the QR the funding call names on show."""
    clients = tuple(caller.client for caller in CALLERS.values())
    app = make_cms(with_trustly=True, clients=clients)
    client = app.test_client()
    excluded = client.put(f"/cws/v1/limits/{EXCLUDED}", json={"dailyLimit": 0},
                          headers=token_of(client, CALLERS["desk"]))
    assert excluded.status_code == 201, excluded.get_data(as_text=True)
    display_qr(app, "EGM-001", own_qr("tx-scoped"))
    return app


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
@pytest.mark.parametrize("who", sorted(CALLERS))
def test_every_endpoint_against_every_client(floor: Flask, who: str, endpoint: str) -> None:
    caller, call = CALLERS[who], ENDPOINTS[endpoint]
    client = floor.test_client()
    headers = token_of(client, caller)
    before = state(floor)
    response = send(client, call, headers)
    if call.scope in caller.granted:
        assert response.status_code != 403, response.get_data(as_text=True)
        assert response.status_code < 500, response.get_data(as_text=True)
        return
    assert response.status_code == 403, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["code"], body["error"], body["scope"]) == (
        "INSUFFICIENT_SCOPE", "insufficient_scope", call.scope)
    assert response.mimetype == "application/problem+json"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert state(floor) == before


def test_tpas_cannot_lift_a_self_exclusion(floor: Flask) -> None:
    client = floor.test_client()
    tpas = token_of(client, CALLERS["tpas"])
    for method in ("PUT", "PATCH"):
        refused = client.open(f"/cws/v1/limits/{EXCLUDED}", method=method, headers=tpas,
                              json={"dailyLimit": 1_000_000})
        assert refused.status_code == 403 and refused.get_json()["code"] == "INSUFFICIENT_SCOPE"
    assert client.delete(f"/cws/v1/limits/{EXCLUDED}", headers=tpas).status_code == 403
    view = client.get(f"/cws/v1/limits/{EXCLUDED}", headers=tpas).get_json()
    assert (view["dailyLimit"], view["remainingToday"]) == (0, 0)
    paid = client.post("/cws/v1/fundings", headers=tpas,
                       json=funding("tx-scoped", ubai=EXCLUDED))
    assert (paid.status_code, paid.get_json()["code"]) == (422, "DAILY_LIMIT_EXCEEDED")


def test_the_table_names_every_cws_operation_and_the_scope_it_declares(cms: Flask) -> None:
    found = set()
    for rule in cms.url_map.iter_rules():
        if rule.rule.startswith("/cws/v1/") and rule.rule != TOKEN_PATH:
            found |= {(method, rule.rule) for method in (rule.methods or set()) - {"HEAD",
                                                                                   "OPTIONS"}}
    assert found == RULES
    urls = cms.url_map.bind("localhost")
    for call in ENDPOINTS.values():
        endpoint, _ = urls.match(call.path, method=call.method)
        assert scopes.REQUIRED[endpoint] == call.scope, endpoint


def test_an_operation_that_declares_no_scope_is_refused_to_every_token(
    cms: Flask, cms_client: FlaskClient,
) -> None:
    name = "cms_egms_api.list_all"
    declared = scopes.REQUIRED.pop(name)
    try:
        response = cms_client.get("/cws/v1/egms", headers=cms_bearer(cms_client))
    finally:
        scopes.REQUIRED[name] = declared
    assert response.status_code == 403 and response.get_json()["code"] == "INSUFFICIENT_SCOPE"


def test_asking_for_a_scope_the_client_lacks_is_refused_and_issues_nothing(
    cms_client: FlaskClient,
) -> None:
    for asked in ("limits:write", "fundings limits:write", "admin", "fundings nonsense"):
        response = cms_client.post(TOKEN_PATH, data={"grant_type": "client_credentials",
                                                     "scope": asked},
                                   headers={"Authorization": basic("tpas-client", "tpas-secret")})
        assert response.status_code == 400, response.get_data(as_text=True)
        body = response.get_json()
        assert (body["code"], body["error"], body["field"]) == (
            "INVALID_SCOPE", "invalid_scope", "scope")
    narrowed = cms_client.post(TOKEN_PATH, data={"grant_type": "client_credentials",
                                                 "scope": "limits:read  fundings"},
                               headers={"Authorization": basic("tpas-client", "tpas-secret")})
    assert narrowed.get_json()["scope"] == "fundings limits:read"


def test_a_token_keeps_the_scopes_it_was_granted(floor: Flask) -> None:
    client = floor.test_client()
    narrowed = token_of(client, Caller(DEMO_DESK_CLIENT, "limits:read",
                                       frozenset({scopes.LIMITS_READ})))
    assert client.get(f"/cws/v1/limits/{EXCLUDED}", headers=narrowed).status_code == 200
    assert client.delete(f"/cws/v1/limits/{EXCLUDED}", headers=narrowed).status_code == 403


def test_the_fast_path_refuses_a_token_without_the_fundings_scope(floor: Flask) -> None:
    client = floor.test_client()
    desk = token_of(client, CALLERS["desk"])
    before = state(floor)
    refused = client.post("/cws/v1/fundings", headers=desk, json=funding("tx-scoped"))
    assert refused.status_code == 403, refused.get_data(as_text=True)
    assert refused.get_json()["code"] == "INSUFFICIENT_SCOPE"
    assert state(floor) == before
    # The same funding with TPAS's token is applied: the QR and the transactionId were free.
    tpas = token_of(client, CALLERS["tpas"])
    applied = client.post("/cws/v1/fundings", headers=tpas, json=funding("tx-scoped"))
    assert applied.status_code == 201, applied.get_data(as_text=True)


def test_configured_clients_get_what_tpas_needs_unless_given_scopes(tmp_path: Any) -> None:
    config = tmp_path / "cms.toml"
    config.write_text('[cms]\n'
                      '[[cms.clients]]\nclient_id = "t"\nclient_secret = "s"\n'
                      '[[cms.clients]]\nclient_id = "d"\nclient_secret = "s"\n'
                      'scopes = ["limits:read", "limits:write"]\n')
    settings = load_cms_settings(environ={}, config_path=config)
    assert [c.scopes for c in settings.clients] == [
        ("fundings", "limits:read"), ("limits:read", "limits:write")]
    config.write_text('[cms]\n[[cms.clients]]\nclient_id = "t"\nclient_secret = "s"\n'
                      'scopes = ["limits:write", "everything"]\n')
    with pytest.raises(ConfigError, match="everything"):
        load_cms_settings(environ={}, config_path=config)


def test_the_openapi_document_names_the_scope_each_operation_needs(cms: Flask) -> None:
    document = build_document()
    urls = cms.url_map.bind("localhost")
    declared = document["components"]["securitySchemes"]["cwsOAuth"]["flows"]
    assert set(declared["clientCredentials"]["scopes"]) == set(scopes.SCOPES)
    for template, item in document["paths"].items():
        for method, operation in item.items():
            if template == TOKEN_PATH or not isinstance(operation, dict):
                continue
            endpoint, _ = urls.match(re.sub(r"\{[^}]+\}", "x", template), method=method.upper())
            assert operation["security"] == [{"cwsOAuth": [scopes.REQUIRED[endpoint]]}], endpoint
            assert "INSUFFICIENT_SCOPE" in json.dumps(operation["responses"]["403"])
