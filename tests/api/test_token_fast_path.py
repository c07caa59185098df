"""The QR Code API's fast path answers exactly what the Flask view would, and yields to it.

The common case is served below Flask (sim_trustly/auth_service/fast_path.py); these tests pin what
a CMS can observe: the same body, the same stored token, control-API changes seen at once by
this process, lockouts, faults and the journal still in force.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sim_trustly.auth_service.fast_path import TOKEN_PATH
from tests.api.test_qr_token_api import BODY, add_merchant, error_of, issued_count, post_token
from tests.conftest import ADMIN_TOKEN, DEMO_AUTH, basic

pytestmark = pytest.mark.db
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _journal(client: FlaskClient, path: str) -> list[dict[str, Any]]:
    response = client.get(f"/_sim/journal?path={path}", headers=ADMIN)
    assert response.status_code == 200
    entries: list[dict[str, Any]] = response.get_json()["entries"]
    return entries


def test_a_token_from_the_fast_path_is_stored_and_answers_in_sorted_json(
    trustly: Flask, client: FlaskClient
) -> None:
    before = issued_count(trustly)
    response = post_token(client)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert list(json.loads(response.data)) == ["expiresAt", "token", "url"]
    assert issued_count(trustly) == before + 1


def test_a_key_replaced_through_the_control_api_is_refused_at_once(
    client: FlaskClient,
) -> None:
    assert post_token(client).status_code == 200  # the credential is now cached
    add_merchant(client, "demo-merchant", "demo-access-id", "a-brand-new-access-key")
    refused = post_token(client)
    assert refused.status_code == 401
    assert error_of(refused)["reason"] == "AUTHENTICATION_FAILED"
    assert post_token(client, auth=basic("demo-access-id", "a-brand-new-access-key")
                      ).status_code == 200


def test_a_lockout_stops_a_credential_the_fast_path_has_cached(client: FlaskClient) -> None:
    assert post_token(client).status_code == 200
    for _ in range(5):
        assert post_token(client, auth=basic("demo-access-id", "wrong")).status_code == 401
    locked = post_token(client)
    assert locked.status_code == 429
    assert error_of(locked)["reason"] == "TOO_MANY_ATTEMPTS"


def test_a_fault_rule_on_the_token_path_still_fires(client: FlaskClient) -> None:
    rule = {"path": TOKEN_PATH, "method": "POST", "action": "status", "status": 503, "times": 1}
    assert client.post("/_sim/faults", json=rule, headers=ADMIN).status_code == 201
    assert post_token(client).status_code == 503
    assert post_token(client).status_code == 200


def test_fast_path_exchanges_are_journaled_with_secrets_masked(client: FlaskClient) -> None:
    response = post_token(client, body=BODY)
    correlation_id = response.headers["X-Correlation-Id"]
    (entry,) = [e for e in _journal(client, TOKEN_PATH) if e["correlationId"] == correlation_id]
    assert entry["status"] == 200 and entry["method"] == "POST"
    assert entry["requestHeaders"]["Authorization"] == "Basic demo-access-id:***"
    token = response.get_json()["token"]
    assert token not in json.dumps(entry)
    assert json.loads(entry["requestBody"]) == BODY


def test_an_offered_correlation_id_is_echoed_by_the_fast_path(client: FlaskClient) -> None:
    response = client.post(TOKEN_PATH, json=BODY,
                           headers={"Authorization": DEMO_AUTH, "X-Correlation-Id": "cid-42"})
    assert response.status_code == 200
    assert response.headers["X-Correlation-Id"] == "cid-42"


def test_a_token_issued_by_one_process_is_scannable_at_once_through_another(
    make_trustly: Any, databases: Any,
) -> None:
    """Issued tokens are stored a moment after their answer; other workers wait for them."""
    url = databases.new("shared")
    issuer, scanner = make_trustly(database_url=url), make_trustly(database_url=url)
    for _ in range(5):
        issued = post_token(issuer.test_client())
        code = issued.get_json()["url"].rsplit("/", 1)[1]
        scan = scanner.test_client().get(f"/api/v1/scan/{code}")
        assert scan.status_code == 200, scan.get_data(as_text=True)
        assert scan.get_json()["state"] == "ACTIVE"
