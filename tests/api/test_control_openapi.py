"""Each sim's control API (`/_sim/*`) has an OpenAPI document: valid, published, and true.

The document is served behind the admin token at `GET /_sim/openapi.json`, written to
docs/api/, and every answer below (every route, with its main statuses, the error ones in
the sim's own dialect) is validated against it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from sim_cms.control_openapi import build_document as cms_document
from sim_trustly.app import create_app as create_trustly
from sim_trustly.control_openapi import build_document as trustly_document
from sim_trustly.settings import TrustlySettings
from simkit.clock import SystemClock
from tests.api.scan_helpers import Floor
from tests.conftest import ADMIN_TOKEN, DatabaseFactory
from tests.openapi_check import OpenApiContract

pytestmark = pytest.mark.db

DOCS = Path(__file__).parents[2] / "docs" / "api"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WRONG = {"Authorization": "Bearer not-the-token"}
Check = Callable[..., Any]


@pytest.fixture
def floor(pay_pair: tuple[Flask, Flask]) -> Floor:
    return Floor(*pay_pair)


class Contract:
    """A document's operations, and the statuses real answers showed for each of them."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.openapi = OpenApiContract(document)

    def checker(self, client: FlaskClient) -> Check:
        """`check(method, path, status, **request)`: send with the admin token (unless
        `headers` says otherwise), assert the status, validate the answer."""
        def check(method: str, path: str, status: int, **kwargs: Any) -> Any:
            kwargs.setdefault("headers", ADMIN)
            response = client.open(path, method=method, **kwargs)
            assert response.status_code == status, (method, path, response.get_data(True))
            self.openapi.check(method, path.partition("?")[0], response.status_code,
                               response.headers,
                               response.get_json(silent=True))
            return response.get_json(silent=True)
        return check

    def assert_every_operation_seen(self) -> None:
        """Every operation answered 401 and a 2xx (seed: its 404) at least once."""
        seen = self.openapi.seen
        for template, item in self.document["paths"].items():
            for method, operation in item.items():
                if method == "parameters":
                    continue
                statuses = {s for m, t, s in seen if (m, t) == (method.upper(), template)}
                assert "401" in statuses, (method, template)
                success = {s for s in operation["responses"] if s.startswith("2")} or {"404"}
                assert statuses & success, (method, template, statuses)


def exercise_kernel(check: Check) -> None:
    """Every kernel route, with its main statuses."""
    for headers in ({}, WRONG):  # no token, a wrong one
        check("GET", "/_sim/state", 401, headers=headers)
        check("GET", "/_sim/openapi.json", 401, headers=headers)
    for method, path in (("POST", "/_sim/reset"), ("POST", "/_sim/seed"), ("GET", "/_sim/clock"),
                         ("POST", "/_sim/clock"), ("GET", "/_sim/journal"),
                         ("DELETE", "/_sim/journal"), ("GET", "/_sim/faults"),
                         ("POST", "/_sim/faults"), ("DELETE", "/_sim/faults"),
                         ("DELETE", "/_sim/faults/1")):
        check(method, path, 401, headers={})
    check("GET", "/_sim/state", 200)
    check("GET", "/_sim/state?x=%00", 400)  # INVALID_CHARACTERS, before any route
    check("POST", "/_sim/seed", 404, json={})
    check("GET", "/_sim/clock", 200)
    check("POST", "/_sim/clock", 200, json={"advance": 1.5})
    check("POST", "/_sim/clock", 200, json={"set": "2026-11-25T21:00:00Z"})
    check("POST", "/_sim/clock", 400, json={"advance": 1, "set": "2026-11-25T21:00:00Z"})
    check("POST", "/_sim/clock", 400, json={"set": "9999-12-31T23:59:59Z"})  # out of range
    check("GET", "/_sim/journal", 200)
    check("GET", "/_sim/journal?limit=1&since=0&path=/&correlationId=c", 200)
    check("GET", "/_sim/journal?limit=0", 400)
    check("DELETE", "/_sim/journal", 200)
    added = check("POST", "/_sim/faults", 201, json={"method": "GET", "path": "/nowhere",
                                                     "action": "status", "status": 503,
                                                     "times": 2})
    check("POST", "/_sim/faults", 201, json={"faults": [
        {"path": "/elsewhere*", "action": "delay", "delayMs": 5, "probability": 0.5},
        {"path": "/gone", "action": "drop"}, {"path": "/twice", "action": "duplicate"},
        {"path": "/never", "action": "crash", "point": "before_commit"}]})
    check("POST", "/_sim/faults", 400, json={"path": "/x", "action": "explode"})
    check("POST", "/_sim/faults", 400, data="{", content_type="application/json")
    listed = check("GET", "/_sim/faults", 200)["faults"]
    assert len(listed) == 5 and listed[-1]["point"] == "before_commit"
    rule_id = added["faults"][0]["id"]
    check("GET", "/_sim/state", 200)  # with rules in force
    check("DELETE", f"/_sim/faults/{rule_id}", 200)
    check("DELETE", f"/_sim/faults/{rule_id}", 404)
    check("DELETE", "/_sim/faults", 200)
    check("GET", "/_sim/openapi.json", 200)


def test_trustly_document_is_valid_served_and_published(floor: Floor) -> None:
    validate(trustly_document())
    served = floor.trustly.get("/_sim/openapi.json", headers=ADMIN).get_json()
    assert served == trustly_document()
    assert json.loads((DOCS / "trustly-control.openapi.json").read_text()) == served, (
        "docs/api is stale: run python -m sim_trustly.control_openapi")


def test_cms_document_is_valid_served_and_published(floor: Floor) -> None:
    validate(cms_document())
    served = floor.cms.get("/_sim/openapi.json", headers=ADMIN).get_json()
    assert served == cms_document()
    assert json.loads((DOCS / "cms-control.openapi.json").read_text()) == served, (
        "docs/api is stale: run python -m sim_cms.control_openapi")


def _pay(floor: Floor, egm_id: str = "EGM-001") -> dict[str, Any]:
    code = floor.show_qr(egm_id)
    response = floor.trustly.post(f"/api/v1/scan/{code}/payments", json={
        "amount": 1200, "currency": "USD", "bank": {"username": "alice", "password": "pw"}})
    assert response.status_code == 201, response.get_data(as_text=True)
    paid: dict[str, Any] = response.get_json()
    return paid


def test_every_trustly_control_answer_conforms(floor: Floor) -> None:
    contract = Contract(trustly_document())
    check = contract.checker(floor.trustly)
    paid = _pay(floor)
    exercise_kernel(check)

    merchant = {"merchantId": "m-doc", "accessId": "a-doc", "accessKey": "k-doc",
                "tokenLifetimeS": 60, "expiresAtFormat": "epoch_ms"}
    check("POST", "/_sim/merchants", 201, json=merchant)
    check("POST", "/_sim/merchants", 400, json={"merchantId": "m-doc"})
    check("POST", "/_sim/merchants", 400, json={**merchant, "name": "n" * 201})
    check("POST", "/_sim/merchants", 415, data="x", content_type="text/plain")
    check("POST", "/_sim/merchants", 413, json={**merchant, "name": "n" * 20_000})

    first = check("GET", "/_sim/signing-keys", 200)["keys"][0]["kid"]
    check("DELETE", f"/_sim/signing-keys/{first}", 409)  # it signs
    check("POST", "/_sim/signing-keys", 201, json={"kid": "k-doc"})
    check("POST", "/_sim/signing-keys", 409, json={"kid": "k-doc"})
    check("POST", "/_sim/signing-keys", 400, json={"kid": ""})
    check("POST", "/_sim/signing-keys", 400, json={"kid": "k-weak", "alg": "HS256",
                                                   "secret": "short"})
    check("GET", "/_sim/signing-keys", 200)  # one retired, one active
    check("DELETE", f"/_sim/signing-keys/{first}", 200)
    check("DELETE", "/_sim/signing-keys/never", 404)

    check("GET", "/_sim/payments", 200)
    check("GET", "/_sim/payments?status=CREDITED&merchantId=demo-merchant"
                 "&since=2026-01-01T00:00:00Z&limit=5", 200)
    check("GET", "/_sim/payments?limit=0", 400)
    check("GET", "/_sim/payments?status=PAID", 400)
    check("GET", f"/_sim/payments/{paid['paymentId']}", 200)
    check("GET", "/_sim/payments/0123456789abcdef0123456789abcdef", 404)
    check("POST", "/_sim/payments/recover", 200)
    check("POST", "/_sim/payments/recover", 200, json={"all": True})
    check("POST", "/_sim/payments/recover", 400, json={"all": 1})
    check("POST", "/_sim/payments/recover", 415, data="x", content_type="text/plain")
    report = check("GET", "/_sim/reconciliation", 200)
    assert report["reconciled"] and report["trustlyTotal"] == 1200
    check("GET", "/_sim/reconciliation?since=yesterday", 400)
    for method, path in (("POST", "/_sim/merchants"), ("GET", "/_sim/signing-keys"),
                         ("POST", "/_sim/signing-keys"), ("DELETE", "/_sim/signing-keys/k"),
                         ("GET", "/_sim/payments"), ("POST", "/_sim/payments/recover"),
                         ("GET", "/_sim/payments/p"), ("GET", "/_sim/reconciliation")):
        check(method, path, 401, headers=WRONG)
    check("POST", "/_sim/reset", 200)
    contract.assert_every_operation_seen()


def test_every_cms_control_answer_conforms(floor: Floor) -> None:
    contract = Contract(cms_document())
    check = contract.checker(floor.cms)
    _pay(floor)
    exercise_kernel(check)

    check("GET", "/_sim/fundings", 200)
    check("GET", "/_sim/fundings?since=2026-01-01T00:00:00Z", 200)
    check("GET", "/_sim/fundings?since=soon", 400)
    check("GET", "/_sim/egms", 200)
    check("GET", "/_sim/egms/EGM-001", 200)
    check("GET", "/_sim/egms/EGM-404", 404)
    check("PUT", "/_sim/egms/EGM-900", 201, json={"name": "Slot 900", "creditLimit": 5000})
    check("PUT", "/_sim/egms/EGM-900", 200, json={"name": "Slot 900b"})
    check("PUT", "/_sim/egms/-bad", 400, json={})
    check("PUT", "/_sim/egms/EGM-900", 400, json={"colour": "red"})
    check("PUT", "/_sim/egms/EGM-900", 415, data="x", content_type="text/plain")
    check("PUT", "/_sim/egms/EGM-900", 413, json={"name": "n" * 20_000})
    check("POST", "/_sim/egms/EGM-900", 200, json={"state": "IN_GAME"})
    check("POST", "/_sim/egms/EGM-900", 400, json={"state": "ASLEEP"})
    check("POST", "/_sim/egms/EGM-900", 400, json={"creditLimit": -1})
    check("POST", "/_sim/egms/EGM-404", 404, json={"state": "IDLE"})
    shown = {"url": "http://127.0.0.1:8710/scan/doc-qr-1", "expiresAt": "2026-11-25T23:00:00Z"}
    check("POST", "/_sim/egms/EGM-900/qr-display", 201, json=shown)
    check("POST", "/_sim/egms/EGM-002/qr-display", 409, json=shown)  # the id was shown
    check("POST", "/_sim/egms/EGM-404/qr-display", 404,
          json={**shown, "qrTokenId": "doc-qr-2"})
    check("POST", "/_sim/egms/EGM-900/qr-display", 400,
          json={**shown, "expiresAt": "2000-01-01T00:00:00Z"})
    check("GET", "/_sim/egms/EGM-900", 200)  # with a QR on screen
    check("POST", "/_sim/qr/rotate", 200)
    for method, path in (("GET", "/_sim/fundings"), ("GET", "/_sim/egms"),
                         ("GET", "/_sim/egms/EGM-001"), ("PUT", "/_sim/egms/EGM-001"),
                         ("POST", "/_sim/egms/EGM-001"), ("POST", "/_sim/egms/EGM-001/qr-display"),
                         ("POST", "/_sim/qr/rotate")):
        check(method, path, 401, headers=WRONG)
    check("POST", "/_sim/reset", 200)
    contract.assert_every_operation_seen()


def test_a_sim_on_the_system_clock_refuses_a_clock_move_as_documented(
    databases: DatabaseFactory,
) -> None:
    app = create_trustly(TrustlySettings(database_url=databases.new("trustly-sysclock"),
                                         admin_token=ADMIN_TOKEN), clock=SystemClock())
    app.testing = True
    check = Contract(trustly_document()).checker(app.test_client())
    try:
        clock = check("GET", "/_sim/clock", 200)
        assert clock["controllable"] is False and clock["frozen"] is None
        check("POST", "/_sim/clock", 409, json={"advance": 60})
    finally:
        app.extensions["sim_trustly"].close()
