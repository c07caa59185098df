"""What the CMS records and answers about money beyond the meter: the audit trail of a
funding decision, the problem a reused transactionId gets, and the usage a limit change
reports.

The audit log is what a casino's auditors read: an applied funding records the meter and
the day's usage it left behind, a refused reuse of a transactionId records both bodies'
fingerprints. A limit change answers with the usage of that UBAI on this gaming day only.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sim_cms import audit
from simkit.clock import ManualClock, format_instant
from tests.api.test_funding_api import EGM, app, auth, client, display_qr, funding, own_qr, post
from tests.conftest import cms_bearer

pytestmark = pytest.mark.db
__all__ = ["app", "auth", "client"]  # the fixtures, used by name


def audit_payloads(app: Flask, subject: str) -> list[tuple[str, dict[str, Any]]]:
    """The audit records filed under `subject`, oldest first: (kind, payload)."""
    with app.extensions["sim_cms"].db.read() as session:
        return [(record.kind, json.loads(record.payload))
                for record in audit.records_for(session, subject)]


def test_an_applied_funding_records_the_meter_and_usage_it_left(
    app: Flask, client: FlaskClient, auth: dict[str, str],
) -> None:
    assert post(client, auth, funding("tx-1")).status_code == 201
    assert post(client, auth, funding("tx-2", amount=500)).status_code == 201
    ((kind, payload),) = audit_payloads(app, "tx-2")
    assert kind == "FUNDING_APPLIED"
    assert (payload["creditMeter"], payload["usedToday"], payload["gamingDay"]) == (
        2500, 2500, "2026-11-25")
    assert (payload["transactionId"], payload["amount"]) == ("tx-2", 500)


def test_a_reused_transaction_id_is_named_in_the_problem_and_audited_with_both_bodies(
    app: Flask, client: FlaskClient, auth: dict[str, str],
) -> None:
    assert post(client, auth, funding("tx-1")).status_code == 201
    reused = post(client, auth, funding("tx-1", amount=1))
    assert reused.status_code == 422
    problem = reused.get_json()
    assert (problem["code"], problem["transactionId"]) == ("IDEMPOTENCY_KEY_REUSED", "tx-1")
    (_, first), (kind, payload) = audit_payloads(app, "tx-1")
    assert kind == "FUNDING_KEY_REUSED" and payload["amount"] == 1
    fingerprints = payload["fingerprint"], payload["storedFingerprint"]
    assert all(len(value) == 64 for value in fingerprints)
    assert fingerprints[0] != fingerprints[1]
    assert first["amount"] == 2000


def set_limit(client: FlaskClient, auth: dict[str, str], ubai: str, limit: int) -> Any:
    response = client.put(f"/cws/v1/limits/{ubai}", json={"dailyLimit": limit}, headers=auth)
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    return response.get_json()


def test_a_limit_change_reports_only_this_ubais_usage_of_this_gaming_day(
    app: Flask, client: FlaskClient, auth: dict[str, str], clock: ManualClock,
) -> None:
    assert post(client, auth, funding("tx-1", ubai="ubai-alice")).status_code == 201
    alice = set_limit(client, auth, "ubai-alice", 50_000)
    assert (alice["usedToday"], alice["remainingToday"]) == (2000, 48_000)
    bob = set_limit(client, auth, "ubai-bob", 50_000)
    assert (bob["usedToday"], bob["remainingToday"]) == (0, 50_000)
    clock.advance(24 * 3600)
    tomorrow = set_limit(client, cms_bearer(client), "ubai-alice", 40_000)
    assert (tomorrow["usedToday"], tomorrow["remainingToday"]) == (0, 40_000)


def test_refusals_of_a_used_or_expired_qr_token_name_the_token_its_egm_and_why(
    app: Flask, client: FlaskClient, auth: dict[str, str],
) -> None:
    assert post(client, auth, funding("tx-a")).status_code == 201
    used = post(client, auth, funding("tx-b", ubai="ubai-bob", qrTokenId=own_qr("tx-a")))
    problem = used.get_json()
    assert (problem["code"], problem["transactionId"], problem["egmId"], problem["fundedBy"]) \
        == ("QR_TOKEN_USED", "tx-b", EGM, "tx-a")
    assert own_qr("tx-a") in problem["detail"] and "tx-a" in problem["detail"]

    ctx = app.extensions["sim_cms"]
    shown_at = ctx.clock.now()
    display_qr(app, EGM, "qr-old")  # Trustly's expiry of the token: the moment it was shown
    ctx.clock.advance(ctx.settings.funding_grace_s + 1)
    expired = post(client, cms_bearer(client), funding("tx-c", qrTokenId="qr-old"))
    problem = expired.get_json()
    assert (problem["code"], problem["transactionId"], problem["egmId"]) == (
        "QR_TOKEN_EXPIRED", "tx-c", EGM)
    assert problem["expiredAt"] == format_instant(shown_at)
    assert "qr-old" in problem["detail"]


def test_a_reused_transaction_id_is_explained(
    client: FlaskClient, auth: dict[str, str],
) -> None:
    post(client, auth, funding("tx-1"))
    detail = post(client, auth, funding("tx-1", amount=1)).get_json()["detail"]
    assert isinstance(detail, str) and "transactionId" in detail


def test_a_credit_cap_refusal_says_what_the_egm_holds_and_can_still_take(
    client: FlaskClient, auth: dict[str, str],
) -> None:
    for n in range(4):
        assert post(client, auth, funding(f"tx-{n}", amount=100_000, ubai=f"u-{n}")) \
            .status_code == 201
    problem = post(client, auth, funding("tx-over", amount=100_001, ubai="u-9")).get_json()
    assert problem["code"] == "CREDIT_LIMIT_EXCEEDED"
    cap = problem["creditLimit"]
    assert (problem["egmId"], problem["creditMeter"], problem["available"]) == (
        EGM, 400_000, cap - 400_000)
    assert 0 < problem["available"] < 100_001
    assert str(problem["available"]) in problem["detail"]


def test_a_daily_limit_refusal_says_nothing_remains_of_which_limit_on_which_day(
    client: FlaskClient, auth: dict[str, str],
) -> None:
    set_limit(client, auth, "ubai-alice", 2000)
    assert post(client, auth, funding("tx-1", ubai="ubai-alice")).status_code == 201
    problem = post(client, auth, funding("tx-2", ubai="ubai-alice", amount=1)).get_json()
    assert (problem["code"], problem["remaining"], problem["dailyLimit"],
            problem["gamingDay"]) == ("DAILY_LIMIT_EXCEEDED", 0, 2000, "2026-11-25")
    assert "0" in problem["detail"]
