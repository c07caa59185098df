"""The auth service's OpenAPI document is valid, published, and true of real responses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from sim_trustly.auth_service.openapi import build_document
from tests.conftest import ADMIN_TOKEN, DEMO_AUTH, basic
from tests.openapi_check import OpenApiContract

PUBLISHED = Path(__file__).parents[2] / "docs" / "api" / "trustly-auth.openapi.json"
TOKEN_PATH = "/auth-service/api/oauth2/qrcode/token"
BODY = {"merchantId": "demo-merchant", "egmId": "EGM-001"}


def test_document_is_valid_openapi_3_1() -> None:
    validate(build_document())


def test_published_document_matches_the_served_one(client: FlaskClient) -> None:
    served = client.get("/openapi.json").get_json()
    assert served == build_document()
    assert json.loads(PUBLISHED.read_text()) == served, (
        "docs/api is stale: run python -m sim_trustly.auth_service.openapi")


def _requests(client: FlaskClient) -> list[tuple[dict[str, Any], Any]]:
    """(request kwargs, response) pairs covering every documented client-side status."""
    cases: list[dict[str, Any]] = [
        {"json": BODY, "headers": {"Authorization": DEMO_AUTH}},
        {"json": {"merchantId": "demo-merchant"}, "headers": {"Authorization": DEMO_AUTH}},
        {"json": BODY},
        {"json": {"merchantId": "nope", "egmId": "EGM-1"}, "headers": {"Authorization": DEMO_AUTH}},
        {"data": "x", "content_type": "text/plain", "headers": {"Authorization": DEMO_AUTH}},
        {"json": {**BODY, "pad": "x" * 20000}, "headers": {"Authorization": DEMO_AUTH}},
    ]
    results = [(case, client.post(TOKEN_PATH, **case)) for case in cases]
    wrong = {"json": BODY, "headers": {"Authorization": basic("demo-access-id", "bad")}}
    for _ in range(6):
        results.append((wrong, client.post(TOKEN_PATH, **wrong)))
    return results


@pytest.mark.db
def test_real_responses_conform_to_the_document(client: FlaskClient) -> None:
    contract = OpenApiContract(build_document())
    for case, response in _requests(client):
        method = case.get("method", "POST")
        contract.check(method, TOKEN_PATH, response.status_code, response.headers,
                       response.get_json())
    statuses = {status for _, _, status in contract.seen}
    assert statuses >= {"200", "400", "401", "403", "413", "415", "429"}


def test_undocumented_methods_get_405_in_the_same_dialect(client: FlaskClient) -> None:
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        response = client.open(TOKEN_PATH, method=method)
        assert response.status_code == 405
        assert "POST" in response.headers["Allow"]
        assert response.get_json()["errors"][0]["reason"] == "METHOD_NOT_ALLOWED"


@pytest.mark.db
def test_injected_503_is_documented_and_in_dialect(client: FlaskClient) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    rule = {"path": TOKEN_PATH, "action": "status", "status": 503, "times": 1}
    assert client.post("/_sim/faults", json=rule, headers=admin).status_code == 201
    response = client.post(TOKEN_PATH, json=BODY, headers={"Authorization": DEMO_AUTH})
    assert response.status_code == 503
    OpenApiContract(build_document()).check("POST", TOKEN_PATH, 503, response.headers,
                                            response.get_json())
    assert response.get_json()["errors"][0]["reason"] == "FAULT_INJECTED"
    again = client.post(TOKEN_PATH, json=BODY, headers={"Authorization": DEMO_AUTH})
    assert again.status_code == 200
