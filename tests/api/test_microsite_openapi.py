"""The phone's JSON API has an OpenAPI document: valid, published, and true of real answers.

`scanpay flow`, certify and the load tests pay through this API; a partner's CI may too. The
document is served by sim_trustly, written to docs/api/, and every answer below (each
documented status) is validated against it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from openapi_spec_validator import validate

from sim_trustly.microsite.openapi import build_document
from simkit.clock import ManualClock
from tests.api.scan_helpers import Floor
from tests.openapi_check import OpenApiContract

pytestmark = pytest.mark.db

PUBLISHED = Path(__file__).parents[2] / "docs" / "api" / "trustly-microsite.openapi.json"


@pytest.fixture
def floor(pay_pair: tuple[Flask, Flask]) -> Floor:
    return Floor(*pay_pair)


def _body(password: str = "pw", currency: str = "USD", amount: Any = 1200) -> dict[str, Any]:
    return {"amount": amount, "currency": currency,
            "bank": {"username": "alice", "password": password}}


def test_document_is_valid_served_and_published(floor: Floor) -> None:
    validate(build_document())
    served = floor.trustly.get("/api/v1/openapi.json").get_json()
    assert served == build_document()
    assert json.loads(PUBLISHED.read_text()) == served, (
        "docs/api is stale: run python -m sim_trustly.microsite.openapi")


def test_every_answer_conforms_to_the_document(floor: Floor, clock: ManualClock) -> None:
    contract = OpenApiContract(build_document())
    client = floor.trustly

    def check(method: str, path: str, **kwargs: Any) -> Any:
        response = client.open(path, method=method, **kwargs)
        contract.check(method, path, response.status_code, response.headers,
                       response.get_json(silent=True))
        return response

    code = floor.show_qr()
    check("GET", f"/api/v1/scan/{code}")
    check("GET", "/api/v1/scan/never-issued")
    check("POST", f"/api/v1/scan/{code}/payments", json={"amount": 1})  # 400, nothing claimed
    check("POST", f"/api/v1/scan/{code}/payments", data="x", content_type="text/plain")
    check("POST", f"/api/v1/scan/{code}/payments", json=_body(currency="EUR"))  # 422
    paid = check("POST", f"/api/v1/scan/{code}/payments", json=_body()).get_json()
    check("GET", f"/api/v1/scan/{code}")  # USED, with its payment
    check("POST", f"/api/v1/scan/{code}/payments", json=_body())  # 409
    check("GET", f"/api/v1/payments/{paid['paymentId']}")
    check("GET", "/api/v1/payments/0123456789abcdef0123456789abcdef")
    refused = floor.show_qr(egm_id="EGM-002")
    check("POST", f"/api/v1/scan/{refused}/payments", json=_body(password="NotEnoughFunds"))
    late = floor.show_qr(egm_id="EGM-003")
    floor.cms_fault(path="/cws/v1/fundings*", action="drop")
    check("POST", f"/api/v1/scan/{late}/payments", json=_body())  # 202: still on its way
    expired = floor.show_qr(egm_id="EGM-004")
    clock.advance(3600)
    check("GET", f"/api/v1/scan/{expired}")
    check("POST", f"/api/v1/scan/{expired}/payments", json=_body())  # 410

    seen = {(method, template, status) for method, template, status in contract.seen}
    assert seen >= {
        ("GET", "/api/v1/scan/{code}", "200"), ("GET", "/api/v1/scan/{code}", "404"),
        ("POST", "/api/v1/scan/{code}/payments", "201"),
        ("POST", "/api/v1/scan/{code}/payments", "202"),
        ("POST", "/api/v1/scan/{code}/payments", "400"),
        ("POST", "/api/v1/scan/{code}/payments", "409"),
        ("POST", "/api/v1/scan/{code}/payments", "410"),
        ("POST", "/api/v1/scan/{code}/payments", "415"),
        ("POST", "/api/v1/scan/{code}/payments", "422"),
        ("GET", "/api/v1/payments/{paymentId}", "200"),
        ("GET", "/api/v1/payments/{paymentId}", "404"),
    }, seen
