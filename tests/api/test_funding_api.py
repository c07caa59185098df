"""The Funding API: applied credits, stored rejections, idempotent replays, status inquiry.

Every rejection test checks that nothing moved: meters, limit usage, ledger rows; the audit
chain grows by exactly the one record of the decision (none for malformed requests).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from sim_cms import audit, ledger
from sim_cms.egms import EGM_ID
from sim_cms.models import (
    Egm,
    FundingRecord,
    LedgerEntry,
    LedgerTransaction,
    LimitUsage,
    QrDisplay,
)
from tests.conftest import ADMIN_TOKEN, cms_bearer

pytestmark = pytest.mark.db

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EGM = "EGM-001"
QR = "qr-token-egm-001"


def own_qr(transaction_id: str) -> str:
    """The QR token `funding` names for a transaction by default."""
    return f"qr-{transaction_id}"


def display_qr(app: Flask, egm_id: str, qr_token_id: str) -> None:
    """Test setup: record that the CMS showed `qr_token_id` on `egm_id` (Trustly's expiry of
    the token is the moment it was shown); nothing if it was already shown."""
    ctx = app.extensions["sim_cms"]
    now = ctx.clock.now()
    with ctx.db.write() as session:
        if session.get(QrDisplay, qr_token_id) is not None:
            return
        session.add(QrDisplay(qr_token_id=qr_token_id, egm_id=egm_id, url=f"https://t/{qr_token_id}",
                              token="jwt", expires_at=now, rotates_at=now, displayed_at=now))


def set_state(client: FlaskClient, egm_id: str, state: str) -> None:
    """Put an EGM in `state` through the control API."""
    response = client.post(f"/_sim/egms/{egm_id}", json={"state": state}, headers=ADMIN)
    assert response.status_code == 200, response.get_data(as_text=True)


def funding(transaction_id: str = "tx-1", **changes: Any) -> dict[str, Any]:
    """A well-formed funding body for EGM-001, naming a QR token of its own (`qr-<id>`):
    a QR token pays one funding. `post` shows that token on the EGM first."""
    body = {"transactionId": transaction_id, "egmId": EGM, "amount": 2000, "currency": "USD",
            "ubai": "ubai-alice", "qrTokenId": own_qr(transaction_id)}
    body.update(changes)
    return body


@dataclass(frozen=True)
class Snapshot:
    """Everything a funding may change, read straight from the database."""

    meters: dict[str, int]
    usage: dict[tuple[str, str], int]
    transactions: int
    entries: int
    records: int
    audit_length: int


def snapshot(app: Flask) -> Snapshot:
    """The current state of meters, usage, ledger, stored outcomes and audit chain."""
    with app.extensions["sim_cms"].db.read() as session:
        assert audit.verify_chain(session).ok
        assert ledger.ledger_sums_to_zero(session)
        meters = {egm.id: egm.credit_meter for egm in session.scalars(select(Egm))}
        for egm_id in meters:
            assert ledger.meter_matches_entries(session, egm_id)
        usage = {(u.ubai, u.gaming_day.isoformat()): u.used
                 for u in session.scalars(select(LimitUsage)) if u.used}

        def count(table: Any) -> int:
            return int(session.scalar(select(func.count()).select_from(table)) or 0)

        return Snapshot(meters, usage, count(LedgerTransaction), count(LedgerEntry),
                        count(FundingRecord), audit.chain_length(session))


def unchanged_but_audit(before: Snapshot, after: Snapshot, *, audited: int,
                        stored: int) -> None:
    """Assert that money did not move; only `audited` audit and `stored` outcome rows were added."""
    assert after.meters == before.meters
    assert after.usage == before.usage
    assert (after.transactions, after.entries) == (before.transactions, before.entries)
    assert after.records == before.records + stored
    assert after.audit_length == before.audit_length + audited


@pytest.fixture
def app(cms: Flask) -> Flask:
    """sim_cms with a QR shown on EGM-001."""
    display_qr(cms, EGM, QR)
    return cms


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of `app`."""
    return app.test_client()


@pytest.fixture
def auth(client: FlaskClient) -> dict[str, str]:
    """Bearer headers of the demo TPAS client."""
    return cms_bearer(client)


def post(client: FlaskClient, auth: dict[str, str], body: Any) -> Any:
    """POST a funding body as JSON; a body naming its own QR token (`funding`'s default)
    gets that token shown on its EGM first, as a player can only pay a code the EGM showed."""
    egm_id = body.get("egmId") if isinstance(body, dict) else None
    if (isinstance(egm_id, str) and EGM_ID.fullmatch(egm_id)
            and body.get("qrTokenId") == own_qr(str(body.get("transactionId")))):
        display_qr(client.application, egm_id, body["qrTokenId"])
    return client.post("/cws/v1/fundings", json=body, headers=auth)


# --- applied ------------------------------------------------------------------------------


def test_funding_credits_the_meter_with_balanced_entries_and_one_audit_record(
    app: Flask, client: FlaskClient, auth: dict[str, str],
) -> None:
    before = snapshot(app)
    response = post(client, auth, funding())
    assert response.status_code == 201
    assert response.mimetype == "application/json"
    assert "Idempotent-Replayed" not in response.headers
    assert response.get_json() == {
        "transactionId": "tx-1", "status": "APPLIED", "egmId": EGM, "amount": 2000,
        "currency": "USD", "creditMeter": 2000, "appliedAt": "2026-11-25T21:00:00.000Z",
    }
    after = snapshot(app)
    assert after.meters[EGM] == before.meters[EGM] + 2000
    assert after.usage == {("ubai-alice", "2026-11-25"): 2000}
    assert (after.transactions, after.entries) == (before.transactions + 1, before.entries + 2)
    assert after.audit_length == before.audit_length + 1


def test_credit_meter_in_the_answer_accumulates_over_fundings(
    client: FlaskClient, auth: dict[str, str],
) -> None:
    meters = [post(client, auth, funding(f"tx-{n}", amount=1500)).get_json()["creditMeter"]
              for n in range(3)]
    assert meters == [1500, 3000, 4500]


def test_funding_exactly_the_remaining_daily_limit_is_applied(
    app: Flask, client: FlaskClient, auth: dict[str, str],
) -> None:
    assert post(client, auth, funding("tx-a", amount=60_000)).status_code == 201
    assert post(client, auth, funding("tx-b", amount=40_000)).status_code == 201
    assert snapshot(app).usage == {("ubai-alice", "2026-11-25"): 100_000}


def test_a_limit_set_through_the_limits_api_is_enforced(
    client: FlaskClient, auth: dict[str, str],
) -> None:
    response = client.put("/cws/v1/limits/ubai-alice", json={"dailyLimit": 2500}, headers=auth)
    assert response.status_code in (200, 201)
    assert post(client, auth, funding("tx-a", amount=2000)).status_code == 201
    refused = post(client, auth, funding("tx-b", amount=501))
    assert refused.status_code == 422
    assert refused.get_json()["remaining"] == 500


@pytest.mark.parametrize("day", [
    date(2026, 11, 26),  # an ordinary day (PST)
    date(2026, 3, 8),    # spring forward at 02:00: a 23-hour night before the boundary
    date(2026, 11, 1),   # fall back at 02:00: a 25-hour night before the boundary
    date(2026, 3, 9),    # the first boundary in PDT
], ids=str)
def test_usage_starts_again_at_the_gaming_day_boundary(
    app: Flask, client: FlaskClient, day: date,
) -> None:
    clock = app.extensions["sim_cms"].clock
    boundary = datetime.combine(day, time(6), tzinfo=ZoneInfo("America/Los_Angeles"))
    clock.set(boundary - timedelta(milliseconds=1))  # 05:59:59.999 local: the previous day
    auth = cms_bearer(client)
    assert post(client, auth, funding("tx-a", amount=100_000)).status_code == 201
    assert post(client, auth, funding("tx-b", amount=1)).get_json()["code"] == \
        "DAILY_LIMIT_EXCEEDED"
    clock.set(boundary)  # 06:00:00.000 local: a new gaming day
    auth = cms_bearer(client)
    assert post(client, auth, funding("tx-c", amount=100_000)).status_code == 201
    previous = (day - timedelta(days=1)).isoformat()
    assert snapshot(app).usage == {("ubai-alice", previous): 100_000,
                                   ("ubai-alice", day.isoformat()): 100_000}


# --- decided rejections -------------------------------------------------------------------

REJECTIONS = [
    # (id, EGM state to set, body changes, status, code)
    ("unknown-egm", None, {"egmId": "EGM-999"}, 404, "EGM_NOT_FOUND"),
    ("offline", "OFFLINE", {}, 503, "EGM_OFFLINE"),
    ("in-game", "IN_GAME", {}, 409, "EGM_BUSY"),
    ("door-open", "DOOR_OPEN", {}, 409, "EGM_DOOR_OPEN"),
    ("tilt", "TILT", {}, 409, "EGM_TILT"),
    ("zero-amount", None, {"amount": 0}, 422, "INVALID_AMOUNT"),
    ("negative-amount", None, {"amount": -2000}, 422, "INVALID_AMOUNT"),
    ("other-currency", None, {"currency": "EUR"}, 422, "INVALID_AMOUNT"),
    ("unsupported-currency", None, {"currency": "XYZ"}, 422, "INVALID_AMOUNT"),
    ("qr-never-shown", None, {"qrTokenId": "qr-never-shown"}, 422, "QR_TOKEN_MISMATCH"),
    ("qr-of-another-egm", None, {"qrTokenId": "qr-token-egm-002"}, 422, "QR_TOKEN_MISMATCH"),
    ("over-meter-cap", None, {"amount": 500_001}, 422, "CREDIT_LIMIT_EXCEEDED"),
    ("over-daily-limit", None, {"amount": 100_001}, 422, "DAILY_LIMIT_EXCEEDED"),
]


@pytest.mark.parametrize(("state", "changes", "status", "code"),
                         [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS])
def test_rejection_is_stored_and_changes_nothing_but_one_audit_record(
    app: Flask, client: FlaskClient, auth: dict[str, str], state: str | None,
    changes: dict[str, Any], status: int, code: str,
) -> None:
    display_qr(app, "EGM-002", "qr-token-egm-002")
    if state is not None:
        set_state(client, EGM, state)
    before = snapshot(app)
    response = post(client, auth, funding("tx-rejected", **changes))
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert (problem["code"], problem["status"], problem["transactionId"]) == \
        (code, status, "tx-rejected")
    unchanged_but_audit(before, snapshot(app), audited=1, stored=1)
    inquiry = client.get("/cws/v1/fundings/tx-rejected", headers=auth).get_json()
    assert (inquiry["status"], inquiry["httpStatus"], inquiry["code"]) == \
        ("REJECTED", status, code)
    assert inquiry["response"] == problem


def test_a_qr_token_pays_one_funding_and_a_second_changes_nothing(
    app: Flask, client: FlaskClient, auth: dict[str, str],
) -> None:
    first = post(client, auth, funding("tx-a"))
    assert first.status_code == 201
    before = snapshot(app)
    refused = post(client, auth, funding("tx-b", ubai="ubai-bob", qrTokenId=own_qr("tx-a")))
    assert refused.status_code == 422
    problem = refused.get_json()
    assert (problem["code"], problem["fundedBy"], problem["transactionId"]) == \
        ("QR_TOKEN_USED", "tx-a", "tx-b")
    unchanged_but_audit(before, snapshot(app), audited=1, stored=1)
    replay = post(client, auth, funding("tx-a"))  # the funding that used it still replays
    assert (replay.status_code, replay.data) == (201, first.data)


def test_a_qr_token_is_payable_until_the_grace_after_its_expiry_and_refused_after(
    app: Flask, client: FlaskClient, auth: dict[str, str],
) -> None:
    clock = app.extensions["sim_cms"].clock
    grace = app.extensions["sim_cms"].settings.funding_grace_s
    display_qr(app, EGM, "qr-late")  # Trustly's expiry of both tokens: now
    display_qr(app, EGM, "qr-too-late")
    clock.advance(grace)
    auth = cms_bearer(client)
    assert post(client, auth, funding("tx-late", qrTokenId="qr-late")).status_code == 201
    clock.advance(0.001)
    before = snapshot(app)
    refused = post(client, auth, funding("tx-too-late", ubai="ubai-bob", qrTokenId="qr-too-late"))
    assert refused.status_code == 422
    assert refused.get_json()["code"] == "QR_TOKEN_EXPIRED"
    unchanged_but_audit(before, snapshot(app), audited=1, stored=1)


def test_daily_limit_rejection_tells_what_remains(
    client: FlaskClient, auth: dict[str, str],
) -> None:
    assert post(client, auth, funding("tx-a", amount=70_000)).status_code == 201
    problem = post(client, auth, funding("tx-b", amount=30_001)).get_json()
    assert (problem["code"], problem["remaining"]) == ("DAILY_LIMIT_EXCEEDED", 30_000)


def test_meter_cap_counts_what_is_already_on_the_meter(
    app: Flask, client: FlaskClient, auth: dict[str, str],
) -> None:
    for n, ubai in enumerate(["u-1", "u-2", "u-3", "u-4", "u-5"]):
        assert post(client, auth, funding(f"tx-{n}", amount=100_000, ubai=ubai)).status_code \
            == 201
    before = snapshot(app)
    problem = post(client, auth, funding("tx-over", amount=1, ubai="u-6")).get_json()
    assert (problem["code"], problem["available"]) == ("CREDIT_LIMIT_EXCEEDED", 0)
    unchanged_but_audit(before, snapshot(app), audited=1, stored=1)


def test_egm_state_is_checked_before_the_amount(
    client: FlaskClient, auth: dict[str, str],
) -> None:
    set_state(client, EGM, "TILT")
    assert post(client, auth, funding(amount=0)).get_json()["code"] == "EGM_TILT"


def test_a_rejected_transaction_id_stays_rejected_after_the_egm_recovers(
    client: FlaskClient, auth: dict[str, str],
) -> None:
    set_state(client, EGM, "IN_GAME")
    first = post(client, auth, funding())
    set_state(client, EGM, "IDLE")
    again = post(client, auth, funding())
    assert (again.status_code, again.data) == (409, first.data)
    assert again.headers["Idempotent-Replayed"] == "true"


# --- idempotency --------------------------------------------------------------------------


def test_replay_is_byte_identical_flagged_and_changes_nothing(
    app: Flask, client: FlaskClient, auth: dict[str, str],
) -> None:
    first = post(client, auth, funding())
    before = snapshot(app)
    app.extensions["sim_cms"].clock.advance(5)
    # Same fields, other member order and spacing: still the same request.
    raw = json.dumps(dict(reversed(list(funding().items()))), indent=2)
    replay = client.post("/cws/v1/fundings", data=raw, content_type="application/json",
                         headers=auth)
    assert (replay.status_code, replay.data) == (201, first.data)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.mimetype == first.mimetype
    unchanged_but_audit(before, snapshot(app), audited=0, stored=0)


def test_replay_of_a_rejection_is_byte_identical(
    app: Flask, client: FlaskClient, auth: dict[str, str],
) -> None:
    first = post(client, auth, funding(egmId="EGM-404"))
    before = snapshot(app)
    replay = post(client, auth, funding(egmId="EGM-404"))
    assert (replay.status_code, replay.data) == (404, first.data)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.mimetype == "application/problem+json"
    unchanged_but_audit(before, snapshot(app), audited=0, stored=0)


CHANGED_FIELDS = [
    ("egmId", "EGM-002"), ("amount", 2001), ("currency", "EUR"), ("ubai", "ubai-bob"),
    ("qrTokenId", "qr-token-egm-002"),
]


@pytest.mark.parametrize(("field", "value"), CHANGED_FIELDS, ids=[f for f, _ in CHANGED_FIELDS])
@pytest.mark.parametrize("first_outcome", ["applied", "rejected"])
def test_reusing_a_transaction_id_with_any_field_changed_is_refused_and_changes_nothing(
    app: Flask, client: FlaskClient, auth: dict[str, str], field: str, value: Any,
    first_outcome: str,
) -> None:
    display_qr(app, "EGM-002", "qr-token-egm-002")
    if first_outcome == "rejected":
        set_state(client, EGM, "DOOR_OPEN")
    first = post(client, auth, funding())
    before = snapshot(app)
    reused = post(client, auth, funding(**{field: value}))
    assert reused.status_code == 422
    assert reused.get_json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert "Idempotent-Replayed" not in reused.headers
    unchanged_but_audit(before, snapshot(app), audited=1, stored=0)
    replay = post(client, auth, funding())  # the original is still what the id means
    assert (replay.status_code, replay.data) == (first.status_code, first.data)


def test_key_reuse_is_audited_under_the_transaction_id(
    app: Flask, client: FlaskClient, auth: dict[str, str],
) -> None:
    post(client, auth, funding())
    post(client, auth, funding(amount=1))
    with app.extensions["sim_cms"].db.read() as session:
        kinds = [r.kind for r in audit.records_for(session, "tx-1")]
    assert kinds == ["FUNDING_APPLIED", "FUNDING_KEY_REUSED"]


# --- malformed requests: 4xx, nothing decided ---------------------------------------------

MALFORMED: list[tuple[str, Any, str, str | None]] = [
    ("not-an-object", ["tx-1"], "INVALID_REQUEST", None),
    ("float-amount", funding(amount=20.0), "VALIDATION_ERROR", "amount"),
    ("exponent-amount", funding(amount=1e3), "VALIDATION_ERROR", "amount"),
    ("string-amount", funding(amount="2000"), "VALIDATION_ERROR", "amount"),
    ("boolean-amount", funding(amount=True), "VALIDATION_ERROR", "amount"),
    ("huge-amount", funding(amount=10**30), "VALIDATION_ERROR", "amount"),
    ("lowercase-currency", funding(currency="usd"), "VALIDATION_ERROR", "currency"),
    ("long-currency", funding(currency="USDT"), "VALIDATION_ERROR", "currency"),
    ("numeric-egm", funding(egmId=1), "VALIDATION_ERROR", "egmId"),
    ("empty-transaction-id", funding(transactionId=""), "VALIDATION_ERROR", "transactionId"),
    ("slash-in-id", funding(transactionId="a/b"), "VALIDATION_ERROR", "transactionId"),
    ("long-id", funding(transactionId="t" * 129), "VALIDATION_ERROR", "transactionId"),
    ("null-ubai", funding(ubai=None), "VALIDATION_ERROR", "ubai"),
    ("nul-in-qr", funding(qrTokenId="qr\u0000"), "VALIDATION_ERROR", "qrTokenId"),
    ("space-in-qr", funding(qrTokenId="qr 1"), "VALIDATION_ERROR", "qrTokenId"),
    ("egm-id-starting-with-dot", funding(egmId=".EGM"), "VALIDATION_ERROR", "egmId"),
    ("ubai-with-slash", funding(ubai="a/b"), "VALIDATION_ERROR", "ubai"),
    *[(f"missing-{name}", {k: v for k, v in funding().items() if k != name},
       "VALIDATION_ERROR", name)
      for name in ("transactionId", "egmId", "amount", "currency", "ubai", "qrTokenId")],
]


@pytest.mark.parametrize(("body", "code", "field"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_request_is_400_and_decides_nothing(
    app: Flask, client: FlaskClient, auth: dict[str, str], body: Any, code: str,
    field: str | None,
) -> None:
    before = snapshot(app)
    response = post(client, auth, body)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert (problem["code"], problem.get("field")) == (code, field)
    unchanged_but_audit(before, snapshot(app), audited=0, stored=0)
    assert client.get("/cws/v1/fundings/tx-1", headers=auth).status_code == 404
    assert post(client, auth, funding()).status_code == 201  # the id is still free


@pytest.mark.parametrize(("data", "content_type", "status"), [
    (b"{not json", "application/json", 400),
    (b'{"amount": NaN}', "application/json", 400),
    (b"\xff\xfe", "application/json", 400),
    (json.dumps(funding()).encode(), "text/plain", 415),
    (b'{"pad": "' + b"x" * 20_000 + b'"}', "application/json", 413),
], ids=["bad-json", "nan", "not-utf8", "wrong-media-type", "too-large"])
def test_unreadable_body_is_refused_and_decides_nothing(
    app: Flask, client: FlaskClient, auth: dict[str, str], data: bytes, content_type: str,
    status: int,
) -> None:
    before = snapshot(app)
    response = client.post("/cws/v1/fundings", data=data, content_type=content_type,
                           headers=auth)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    unchanged_but_audit(before, snapshot(app), audited=0, stored=0)


def test_base64url_ids_are_accepted_whatever_their_first_character(
    app: Flask, client: FlaskClient, auth: dict[str, str],
) -> None:
    display_qr(app, EGM, "-Xq_9kLm2PqRsTuVwXyZ0a")
    body = funding("_tx~0.9:z-", qrTokenId="-Xq_9kLm2PqRsTuVwXyZ0a")
    assert post(client, auth, body).status_code == 201
    assert client.get("/cws/v1/fundings/_tx~0.9:z-", headers=auth).status_code == 200


def test_unknown_members_are_ignored_and_do_not_change_the_fingerprint(
    client: FlaskClient, auth: dict[str, str],
) -> None:
    first = post(client, auth, funding(note="first"))
    again = post(client, auth, funding(note="second"))
    assert (first.status_code, again.data) == (201, first.data)


# --- status inquiry and auth --------------------------------------------------------------


def test_status_inquiry_reports_an_applied_funding_and_its_original_answer(
    client: FlaskClient, auth: dict[str, str],
) -> None:
    original = post(client, auth, funding()).get_json()
    response = client.get("/cws/v1/fundings/tx-1", headers=auth)
    assert response.status_code == 200
    assert response.get_json() == {
        "transactionId": "tx-1", "status": "APPLIED", "httpStatus": 201, "egmId": EGM,
        "amount": 2000, "currency": "USD", "decidedAt": "2026-11-25T21:00:00.000Z",
        "response": original,
    }


def test_status_inquiry_of_an_unknown_id_is_404_funding_not_found(
    client: FlaskClient, auth: dict[str, str],
) -> None:
    response = client.get("/cws/v1/fundings/never-sent", headers=auth)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "FUNDING_NOT_FOUND"


def test_status_inquiry_of_a_malformed_id_is_400(
    client: FlaskClient, auth: dict[str, str],
) -> None:
    response = client.get("/cws/v1/fundings/bad%00id", headers=auth)
    assert response.status_code == 400
    assert response.get_json()["field"] == "transactionId"


@pytest.mark.parametrize("method", ["get", "post"])
def test_funding_api_requires_a_bearer_token(app: Flask, client: FlaskClient,
                                             method: str) -> None:
    before = snapshot(app)
    if method == "post":
        response = client.post("/cws/v1/fundings", json=funding())
    else:
        response = client.get("/cws/v1/fundings/tx-1")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    unchanged_but_audit(before, snapshot(app), audited=0, stored=0)


def test_expired_token_is_refused_before_anything_is_decided(
    app: Flask, client: FlaskClient, auth: dict[str, str],
) -> None:
    app.extensions["sim_cms"].clock.advance(301)
    before = snapshot(app)
    response = post(client, auth, funding())
    assert (response.status_code, response.get_json()["code"]) == (401, "TOKEN_EXPIRED")
    unchanged_but_audit(before, snapshot(app), audited=0, stored=0)
