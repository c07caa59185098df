"""The Funding API's fast path answers exactly what the Flask view would, and yields to it.

Fundings are decided below Flask (sim_cms/funding/fast_path.py) when the request is
well-formed and authenticated; these tests pin what TPAS can observe: the same status, body,
headers and replays whichever side answered, the journal and faults still in force, and every
unusual request still answered by the view.

The view's own answers are obtained by declaring a harmless fault rule on the path (a 1 ms
delay): a live rule for the path sends every request to the view, which applies it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from sim_cms.funding.fast_path import FUNDINGS_PATH
from tests.api.test_funding_api import ADMIN, display_qr, funding, own_qr, snapshot
from tests.conftest import cms_bearer

pytestmark = pytest.mark.db


def _answer(response: TestResponse) -> tuple[int, Any, dict[str, str]]:
    """Status, parsed body (the appliedAt instant aside) and the headers TPAS reads."""
    body = json.loads(response.data)
    body.pop("appliedAt", None)
    body.pop("transactionId", None)
    headers = {name: response.headers[name] for name in ("Content-Type", "Idempotent-Replayed")
               if name in response.headers}
    return response.status_code, body, headers


def _view_only(client: FlaskClient) -> None:
    response = client.post("/_sim/faults", headers=ADMIN, json={
        "method": "POST", "path": FUNDINGS_PATH, "action": "delay", "delayMs": 1})
    assert response.status_code == 201, response.get_data(as_text=True)


CASES: dict[str, dict[str, Any]] = {
    "applied": {},
    "over-the-credit-cap": {"amount": 10**9},
    "wrong-currency": {"currency": "EUR"},
    "qr-not-displayed": {"qrTokenId": "never-shown"},
    "unknown-egm": {"egmId": "EGM-999"},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_path_and_view_answer_alike_first_time_and_on_replay(
    cms: Flask, cms_client: FlaskClient, case: str,
) -> None:
    for transaction_id in ("tx-fast", "tx-view"):  # a QR token pays one funding
        display_qr(cms, "EGM-001", own_qr(transaction_id))
    bearer = cms_bearer(cms_client)
    fast_body = funding("tx-fast", **CASES[case])
    fast = cms_client.post("/cws/v1/fundings", json=fast_body, headers=bearer)
    fast_replay = cms_client.post("/cws/v1/fundings", json=fast_body, headers=bearer)
    _view_only(cms_client)
    view_body = funding("tx-view", **{**CASES[case], "ubai": "ubai-bob"})
    view = cms_client.post("/cws/v1/fundings", json=view_body, headers=bearer)
    view_replay = cms_client.post("/cws/v1/fundings", json=view_body, headers=bearer)
    for first, again in ((fast, fast_replay), (view, view_replay)):
        assert again.data == first.data  # a replay is byte for byte the first answer
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert first.headers.get("Idempotent-Replayed") is None
    status, body, headers = _answer(fast)
    if case == "applied":  # the second credit lands on a meter that already holds the first
        body["creditMeter"] += fast_body["amount"]
    assert (status, body, headers) == _answer(view)
    assert _answer(fast_replay)[2] == _answer(view_replay)[2]


def test_a_fault_rule_on_the_funding_path_still_fires_and_changes_nothing(
    cms: Flask, cms_client: FlaskClient,
) -> None:
    display_qr(cms, "EGM-001", own_qr("tx-1"))
    bearer = cms_bearer(cms_client)
    before = snapshot(cms)
    response = cms_client.post("/_sim/faults", headers=ADMIN, json={
        "method": "POST", "path": FUNDINGS_PATH, "action": "status", "status": 503,
        "times": 1})
    assert response.status_code == 201
    faulted = cms_client.post("/cws/v1/fundings", json=funding(), headers=bearer)
    assert faulted.status_code == 503
    assert faulted.get_json()["code"] == "FAULT_INJECTED"
    assert snapshot(cms) == before
    assert cms_client.post("/cws/v1/fundings", json=funding(),
                           headers=bearer).status_code == 201


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}],
                         ids=["no-token", "unknown-token"])
def test_requests_the_fast_path_cannot_authenticate_get_the_views_401(
    cms: Flask, cms_client: FlaskClient, headers: dict[str, str],
) -> None:
    display_qr(cms, "EGM-001", own_qr("tx-1"))
    before = snapshot(cms)
    response = cms_client.post("/cws/v1/fundings", json=funding(), headers=headers)
    assert response.status_code == 401
    assert response.get_json()["code"] == "INVALID_TOKEN"
    assert snapshot(cms) == before


def test_a_malformed_body_gets_the_views_400_naming_the_field(
    cms: Flask, cms_client: FlaskClient,
) -> None:
    bearer = cms_bearer(cms_client)
    response = cms_client.post("/cws/v1/fundings", json=funding(amount="20.5"), headers=bearer)
    assert response.status_code == 400
    assert response.get_json()["field"] == "amount"


def test_fast_path_fundings_are_journaled_with_the_token_masked(
    cms: Flask, cms_client: FlaskClient,
) -> None:
    client = cms_client
    display_qr(cms, "EGM-001", own_qr("tx-1"))
    bearer = cms_bearer(client)
    token = bearer["Authorization"].split()[1]
    response = client.post("/cws/v1/fundings", json=funding(), headers={
        **bearer, "X-Correlation-Id": "corr-fund-1"})
    assert response.status_code == 201
    assert response.headers["X-Correlation-Id"] == "corr-fund-1"
    listed = client.get(f"/_sim/journal?path={FUNDINGS_PATH}", headers=ADMIN)
    [entry] = listed.get_json()["entries"]
    assert entry["correlationId"] == "corr-fund-1"
    assert entry["status"] == 201
    assert token not in json.dumps(entry)
