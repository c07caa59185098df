"""sim_cms's OAuth2 client credentials endpoint and the Bearer guard of the CWS API."""

from __future__ import annotations

import json
from urllib.parse import quote_plus

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from sim_cms.access_tokens import token_hash
from sim_cms.models import AccessToken
from sim_cms.settings import ClientConfig
from simkit.clock import ManualClock
from tests.conftest import ADMIN_TOKEN, CMS_AUTH, CmsFactory, basic

pytestmark = pytest.mark.db

TOKEN_PATH = "/cws/v1/oauth/token"
PROTECTED = "/cws/v1/limits/ubai-1"
GRANT = {"grant_type": "client_credentials"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def token_rows(app: Flask) -> int:
    with app.extensions["sim_cms"].db.read() as session:
        return int(session.scalar(select(func.count()).select_from(AccessToken)) or 0)


def issue(client: FlaskClient, **kwargs: object) -> TestResponse:
    kwargs.setdefault("data", GRANT)
    kwargs.setdefault("headers", {"Authorization": CMS_AUTH})
    return client.post(TOKEN_PATH, **kwargs)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: TestResponse, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body: dict[str, object] = response.get_json()
    assert body["code"] == code and body["status"] == status
    return body


def test_client_credentials_give_a_bearer_token_that_is_never_cached(
    cms_client: FlaskClient,
) -> None:
    response = issue(cms_client)
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert len(body["access_token"]) >= 43  # 256 bits in base64url
    assert response.headers["Cache-Control"] == "no-store"
    assert cms_client.get(PROTECTED, headers=bearer(body["access_token"])).status_code == 200


def test_each_token_is_new(cms_client: FlaskClient) -> None:
    tokens = {issue(cms_client).get_json()["access_token"] for _ in range(3)}
    assert len(tokens) == 3


def test_client_credentials_in_the_form_body_are_accepted(cms_client: FlaskClient) -> None:
    form = {**GRANT, "client_id": "tpas-client", "client_secret": "tpas-secret"}
    response = issue(cms_client, data=form, headers={})
    assert response.status_code == 200


def test_a_json_body_is_accepted(cms_client: FlaskClient) -> None:
    response = issue(cms_client, data=None, json=GRANT)
    assert response.status_code == 200


def test_the_ttl_comes_from_the_settings(make_cms: CmsFactory) -> None:
    client = make_cms(access_token_ttl_s=60).test_client()
    assert issue(client).get_json()["expires_in"] == 60


def test_the_token_expires_exactly_at_its_ttl(
    cms_client: FlaskClient, clock: ManualClock
) -> None:
    token = issue(cms_client).get_json()["access_token"]
    clock.advance(299)
    assert cms_client.get(PROTECTED, headers=bearer(token)).status_code == 200
    clock.advance(1)
    response = cms_client.get(PROTECTED, headers=bearer(token))
    assert_problem(response, 401, "TOKEN_EXPIRED")
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="cws"') and 'error="invalid_token"' in challenge
    assert "error_description=" in challenge
    clock.advance(3600)
    assert_problem(cms_client.get(PROTECTED, headers=bearer(token)), 401, "TOKEN_EXPIRED")


def test_a_fresh_token_works_after_the_old_one_expired(
    cms_client: FlaskClient, clock: ManualClock
) -> None:
    issue(cms_client)
    clock.advance(300)
    token = issue(cms_client).get_json()["access_token"]
    assert cms_client.get(PROTECTED, headers=bearer(token)).status_code == 200


def test_long_expired_tokens_are_pruned_when_a_token_is_issued(
    cms: Flask, cms_client: FlaskClient, clock: ManualClock
) -> None:
    old = issue(cms_client).get_json()["access_token"]
    clock.advance(300 + 86_400 + 1)
    issue(cms_client)
    assert token_rows(cms) == 1
    assert_problem(cms_client.get(PROTECTED, headers=bearer(old)), 401, "INVALID_TOKEN")


def test_tokens_are_stored_only_as_hashes(cms: Flask, cms_client: FlaskClient) -> None:
    token = issue(cms_client).get_json()["access_token"]
    with cms.extensions["sim_cms"].db.read() as session:
        stored = list(session.scalars(select(AccessToken.token_hash)))
    assert stored == [token_hash(token)] and token not in stored


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": basic("tpas-client", "wrong-secret")},
        {"Authorization": basic("nobody", "tpas-secret")},
        {"Authorization": "Basic not-base64!"},
        {"Authorization": "Bearer something"},
        {"Authorization": "Basic"},
    ],
    ids=["none", "wrong-secret", "unknown-client", "broken-basic", "bearer", "empty-basic"],
)
def test_bad_client_credentials_are_refused_and_issue_nothing(
    cms: Flask, cms_client: FlaskClient, headers: dict[str, str]
) -> None:
    response = issue(cms_client, headers=headers)
    body = assert_problem(response, 401, "INVALID_CLIENT")
    assert body["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"] == 'Basic realm="cws"'
    assert token_rows(cms) == 0


def test_a_wrong_secret_in_the_form_body_is_refused(cms: Flask, cms_client: FlaskClient) -> None:
    form = {**GRANT, "client_id": "tpas-client", "client_secret": "nope"}
    assert_problem(issue(cms_client, data=form, headers={}), 401, "INVALID_CLIENT")
    assert_problem(issue(cms_client, data={**GRANT, "client_id": "tpas-client"}, headers={}),
                   401, "INVALID_CLIENT")
    assert token_rows(cms) == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"data": {}}, "grant_type"),
        ({"data": {"grant_type": ""}}, "grant_type"),
        ({"data": "grant_type=client_credentials&grant_type=client_credentials",
          "content_type": "application/x-www-form-urlencoded"}, "grant_type"),
        ({"data": {**GRANT, "client_secret": "tpas-secret"}}, None),
        ({"data": {**GRANT, "client_id": "someone-else"}}, "client_id"),
        ({"data": "grant_type=client_credentials", "content_type": "text/plain"}, None),
        ({"data": None, "json": ["grant_type"]}, None),
        ({"data": None, "json": {"grant_type": 1}}, "grant_type"),
        ({"data": "{not json", "content_type": "application/json"}, None),
    ],
    ids=["missing-grant", "empty-grant", "repeated-grant", "two-auth-methods",
         "other-client-id", "text-plain", "json-array", "json-number", "broken-json"],
)
def test_malformed_token_requests_are_invalid_requests_and_issue_nothing(
    cms: Flask, cms_client: FlaskClient, kwargs: dict[str, object], field: str | None
) -> None:
    body = assert_problem(issue(cms_client, **kwargs), 400, "INVALID_REQUEST")
    assert body.get("field") == field
    assert token_rows(cms) == 0


@pytest.mark.parametrize("grant", ["password", "authorization_code", "refresh_token", "x"])
def test_other_grant_types_are_unsupported(
    cms: Flask, cms_client: FlaskClient, grant: str
) -> None:
    body = assert_problem(issue(cms_client, data={"grant_type": grant}), 400,
                          "UNSUPPORTED_GRANT_TYPE")
    assert body["error"] == "unsupported_grant_type"
    assert token_rows(cms) == 0


def test_client_credentials_are_checked_before_the_grant_type(cms_client: FlaskClient) -> None:
    response = issue(cms_client, data={"grant_type": "password"},
                     headers={"Authorization": basic("tpas-client", "wrong")})
    assert_problem(response, 401, "INVALID_CLIENT")


def test_the_token_endpoint_answers_only_post(cms_client: FlaskClient) -> None:
    assert_problem(cms_client.get(TOKEN_PATH), 405, "METHOD_NOT_ALLOWED")


def test_basic_credentials_may_be_form_encoded_as_rfc_6749_asks(make_cms: CmsFactory) -> None:
    secret = "p@ss word+/:%"
    app = make_cms(clients=(ClientConfig(client_id="odd client", client_secret=secret),))
    client = app.test_client()
    encoded = basic(quote_plus("odd client"), quote_plus(secret))
    assert issue(client, headers={"Authorization": encoded}).status_code == 200
    raw = basic("odd client", secret)
    assert issue(client, headers={"Authorization": raw}).status_code == 200
    wrong = basic(quote_plus("odd client"), quote_plus("p@ss word"))
    assert_problem(issue(client, headers={"Authorization": wrong}), 401, "INVALID_CLIENT")


@pytest.mark.parametrize(
    ("headers", "code", "with_error"),
    [
        ({}, "INVALID_TOKEN", False),
        ({"Authorization": "Bearer unknown-token"}, "INVALID_TOKEN", True),
        ({"Authorization": "Bearer"}, "INVALID_TOKEN", True),
        ({"Authorization": "Bearer two tokens"}, "INVALID_TOKEN", True),
        ({"Authorization": CMS_AUTH}, "INVALID_TOKEN", True),
    ],
    ids=["missing", "unknown", "empty", "two-words", "basic-instead"],
)
def test_the_cws_api_needs_a_valid_bearer_token(
    cms_client: FlaskClient, headers: dict[str, str], code: str, with_error: bool
) -> None:
    response = cms_client.get(PROTECTED, headers=headers)
    assert_problem(response, 401, code)
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="cws"')
    assert ('error="invalid_token"' in challenge) is with_error


def test_secrets_and_tokens_never_reach_the_journal(cms_client: FlaskClient) -> None:
    token = issue(cms_client).get_json()["access_token"]
    form = {**GRANT, "client_id": "tpas-client", "client_secret": "tpas-secret"}
    issue(cms_client, data=form, headers={})
    issue(cms_client, headers={"Authorization": basic("tpas-client", "guessed-secret")})
    cms_client.get(PROTECTED, headers=bearer(token))
    entries = cms_client.get("/_sim/journal", headers=ADMIN).get_json()["entries"]
    assert [e["status"] for e in entries] == [200, 200, 401, 200]
    dumped = json.dumps(entries)
    for secret in ("tpas-secret", "guessed-secret", token, ADMIN_TOKEN):
        assert secret not in dumped
    assert "tpas-client" in entries[0]["requestHeaders"]["Authorization"]


def test_a_reset_through_the_control_api_revokes_tokens_at_once(cms_client: FlaskClient) -> None:
    token = issue(cms_client).get_json()["access_token"]
    assert cms_client.get(PROTECTED, headers=bearer(token)).status_code == 200  # now cached
    assert cms_client.post("/_sim/reset", headers=ADMIN).status_code == 200
    assert_problem(cms_client.get(PROTECTED, headers=bearer(token)), 401, "INVALID_TOKEN")


def test_a_token_deleted_behind_the_cache_is_refused_once_it_is_revalidated(
    cms: Flask, cms_client: FlaskClient, clock: ManualClock,
) -> None:
    """Another process's reset deletes the row; this process notices within REVALIDATE."""
    from sim_cms.access_tokens import TokenCache

    token = issue(cms_client).get_json()["access_token"]
    assert cms_client.get(PROTECTED, headers=bearer(token)).status_code == 200
    with cms.extensions["sim_cms"].db.write() as session:
        session.query(AccessToken).delete()
    clock.advance(TokenCache.REVALIDATE.total_seconds())
    assert_problem(cms_client.get(PROTECTED, headers=bearer(token)), 401, "INVALID_TOKEN")
