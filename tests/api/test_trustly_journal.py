"""The journal records what a CMS sent and got, and never a secret."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient

from tests.conftest import ADMIN_TOKEN, basic

pytestmark = pytest.mark.db

TOKEN_PATH = "/auth-service/api/oauth2/qrcode/token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_journal_keeps_the_exchange_without_secrets(client: FlaskClient) -> None:
    secret_key = "demo-access-key"
    ok = client.post(TOKEN_PATH, json={"merchantId": "demo-merchant", "egmId": "EGM-001"},
                     headers={"Authorization": basic("demo-access-id", secret_key),
                              "X-Correlation-Id": "flow-1"})
    jwt = ok.get_json()["token"]
    client.post(TOKEN_PATH, json={"merchantId": "demo-merchant", "egmId": "EGM-001"},
                headers={"Authorization": basic("demo-access-id", "wrong-key-guess")})
    entries = client.get("/_sim/journal", headers=ADMIN).get_json()["entries"]
    assert [e["status"] for e in entries] == [200, 401]
    assert entries[0]["correlationId"] == "flow-1"
    assert ok.headers["X-Correlation-Id"] == "flow-1"
    dumped = json.dumps(entries)
    for secret in (secret_key, "wrong-key-guess", jwt, ADMIN_TOKEN):
        assert secret not in dumped
    assert "demo-access-id" in entries[0]["requestHeaders"]["Authorization"]


def test_journal_filters_by_correlation_id(client: FlaskClient) -> None:
    for cid in ("a-1", "b-2", "a-1"):
        client.post(TOKEN_PATH, json={}, headers={"X-Correlation-Id": cid})
    found = client.get("/_sim/journal?correlationId=a-1", headers=ADMIN).get_json()["entries"]
    assert len(found) == 2 and {e["correlationId"] for e in found} == {"a-1"}
