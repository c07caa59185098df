"""The journal: every exchange recorded once, correlation ids echoed, secrets never stored."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from simkit.clock import SystemClock
from simkit.journal import Journal, redact_body, redact_headers
from simkit.models import JournalEntry
from tests.unit.kernel_app import Kernel, make_database, make_kernel_app

SECRETS = ("demo-access-key", "hunter2", "s3cr3t-refresh", "server-issued-secret")


@pytest.fixture
def kernel(tmp_path: Path) -> Kernel:
    return make_kernel_app(tmp_path)


@pytest.fixture
def client(kernel: Kernel) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=kernel.app), base_url="http://sim")


def _basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def _raw_rows(kernel: Kernel) -> list[str]:
    """Every stored column of every entry as text, to search for leaked secrets."""
    kernel.journal.flush()
    with kernel.db.read() as session:
        rows = session.scalars(select(JournalEntry)).all()
        return [" ".join(str(v) for v in vars(row).values()) for row in rows]


# --- redaction as pure functions ---------------------------------------------------------

def test_basic_authorization_keeps_the_user_id_and_masks_the_secret() -> None:
    shown = redact_headers({"Authorization": _basic("demo-access-id", "demo-access-key")})
    assert shown == {"Authorization": "Basic demo-access-id:***"}


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("Authorization", "Bearer eyJhbGciOi.payload.sig", "Bearer ***"),
        ("Authorization", "Basic not-base64!", "Basic ***"),
        ("Authorization", "opaque", "***"),
        ("Cookie", "session=abc", "***"),
        ("X-Api-Key", "k-123", "***"),
        ("X-Signing-Secret", "x", "***"),
        ("X-Refresh-Token", "x", "***"),
        ("Idempotency-Key", "tx-42", "tx-42"),
        ("Content-Type", "application/json", "application/json"),
    ],
)
def test_credential_headers_are_masked_and_others_kept(name: str, value: str, shown: str) -> None:
    assert redact_headers([(name, value)]) == {name: shown}


def test_secret_json_fields_are_masked_at_any_depth() -> None:
    body = {
        "merchantId": "m-1",
        "accessKey": "demo-access-key",
        "bank": {"username": "alice", "password": "hunter2"},
        "credentials": [{"client_secret": "cs", "refresh_token": "rt", "apiKey": "ak"}],
        "signing": {"signingKey": "sk", "token": "jwt"},
    }
    shown = json.loads(redact_body(json.dumps(body), "application/json"))
    assert shown == {
        "merchantId": "m-1",
        "accessKey": "***",
        "bank": {"username": "alice", "password": "***"},
        "credentials": [{"client_secret": "***", "refresh_token": "***", "apiKey": "***"}],
        "signing": {"signingKey": "***", "token": "***"},
    }


def test_secret_form_fields_are_masked() -> None:
    form = "grant_type=client_credentials&client_id=tpas-client&client_secret=tpas-secret"
    shown = redact_body(form.encode(), "application/x-www-form-urlencoded")
    assert shown == "grant_type=client_credentials&client_id=tpas-client&client_secret=%2A%2A%2A"


def test_malformed_json_still_has_its_secrets_masked() -> None:
    broken = b'{"accessKey": "demo-access-key", "password": "hunter2"'
    shown = redact_body(broken, "application/json")
    assert "demo-access-key" not in shown
    assert "hunter2" not in shown


def test_long_bodies_are_cut_after_redaction() -> None:
    body = json.dumps({"password": "hunter2", "filler": "x" * 500})
    shown = redact_body(body, "application/json", limit=40)
    assert shown.startswith('{"password":"***"')
    assert "more characters" in shown
    assert "hunter2" not in shown


def test_binary_bodies_are_summarised_not_stored() -> None:
    assert redact_body(b"\x89PNG\r\n", "image/png") == "<6 bytes image/png>"


# --- the journal on a running app ---------------------------------------------------------

def test_secrets_in_a_request_and_its_response_never_reach_the_journal(
    kernel: Kernel, client: httpx.Client
) -> None:
    client.post(
        "/login?access_token=s3cr3t-refresh&page=1",
        headers={"Authorization": _basic("demo-access-id", "demo-access-key")},
        json={"user": "alice", "accessKey": "demo-access-key", "password": "hunter2"},
    )
    (entry,) = kernel.journal.query()
    assert entry["requestHeaders"]["Authorization"] == "Basic demo-access-id:***"
    assert json.loads(entry["requestBody"])["user"] == "alice"
    assert "page=1" in entry["query"]
    stored = json.dumps(entry) + " ".join(_raw_rows(kernel))
    for secret in SECRETS:
        assert secret not in stored


def test_an_exchange_is_recorded_with_status_latency_and_bodies(
    kernel: Kernel, client: httpx.Client
) -> None:
    client.post("/counter", json={"n": 1})
    (entry,) = kernel.journal.query()
    assert (entry["method"], entry["path"], entry["status"]) == ("POST", "/counter", 201)
    assert json.loads(entry["responseBody"]) == {"value": 1}
    assert entry["latencyMs"] >= 0
    assert entry["at"] == "2031-03-01T12:00:00.000Z"
    assert entry["fault"] is None


def test_error_responses_are_recorded_too(kernel: Kernel, client: httpx.Client) -> None:
    client.post("/refuse")
    (entry,) = kernel.journal.query()
    assert entry["status"] == 400
    assert json.loads(entry["responseBody"])["code"] == "INVALID_REQUEST"


def test_a_valid_correlation_id_is_echoed_and_stored(kernel: Kernel, client: httpx.Client) -> None:
    response = client.get("/ping", headers={"X-Correlation-Id": "run-7:scan.1_a-b"})
    assert response.headers["X-Correlation-Id"] == "run-7:scan.1_a-b"
    assert kernel.journal.query()[0]["correlationId"] == "run-7:scan.1_a-b"


@pytest.mark.parametrize("offered", [None, "", "has space", "x" * 129, "semi;colon"])
def test_a_missing_or_invalid_correlation_id_is_replaced_by_a_fresh_one(
    client: httpx.Client, offered: str | None
) -> None:
    headers = {"X-Correlation-Id": offered} if offered is not None else {}
    first = client.get("/ping", headers=headers).headers["X-Correlation-Id"]
    second = client.get("/ping", headers=headers).headers["X-Correlation-Id"]
    assert len(first) == 32
    assert int(first, 16) >= 0
    assert first != second


def test_entries_are_filtered_by_correlation_id_and_path_prefix(
    kernel: Kernel, client: httpx.Client
) -> None:
    client.get("/ping", headers={"X-Correlation-Id": "flow-a"})
    client.post("/counter", headers={"X-Correlation-Id": "flow-a"})
    client.get("/counter", headers={"X-Correlation-Id": "flow-b"})
    assert [e["path"] for e in kernel.journal.query(correlation_id="flow-a")] == [
        "/ping", "/counter"]
    assert [e["correlationId"] for e in kernel.journal.query(path="/count")] == [
        "flow-a", "flow-b"]
    assert kernel.journal.query(path="/count%") == []


def test_since_pages_forward_and_limit_alone_keeps_the_latest(
    kernel: Kernel, client: httpx.Client
) -> None:
    for _ in range(5):
        client.get("/ping")
    ids = [e["id"] for e in kernel.journal.query()]
    assert [e["id"] for e in kernel.journal.query(limit=2)] == ids[-2:]
    assert [e["id"] for e in kernel.journal.query(since_id=ids[0], limit=2)] == ids[1:3]


def test_control_requests_are_not_journaled(kernel: Kernel, client: httpx.Client) -> None:
    client.get("/_sim/clock")
    assert kernel.journal.query() == []


def test_clear_empties_the_journal(kernel: Kernel, client: httpx.Client) -> None:
    client.get("/ping")
    assert kernel.journal.clear() == 1
    assert kernel.journal.query() == []


def test_a_failing_journal_never_breaks_the_request(
    kernel: Kernel, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    JournalEntry.__table__.drop(kernel.db.engine)  # type: ignore[attr-defined]
    response = client.get("/ping")
    assert response.status_code == 200
    assert response.json() == {"pong": True}
    kernel.journal.flush()
    assert "could not be stored" in caplog.text


def test_record_redacts_what_a_direct_caller_passes(tmp_path: Path) -> None:
    journal = Journal(make_database(tmp_path), SystemClock(), max_body=64)
    journal.record(
        correlation_id="c", method="POST", path="/x", query="", status=200, latency_ms=3,
        request_headers={"Content-Type": "application/json", "X-Api-Key": "k"},
        request_body=json.dumps({"apiKey": "k-secret", "pad": "y" * 200}),
        response_headers={}, response_body=b"",
    )
    (entry,) = journal.query()
    assert entry["requestHeaders"]["X-Api-Key"] == "***"
    assert "k-secret" not in entry["requestBody"]
    assert len(entry["requestBody"]) < 120
