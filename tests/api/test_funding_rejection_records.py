"""What the audit log keeps of a refused funding, and what the control API says of a ledger
whose transactions no longer balance.

An auditor reads a funding's decision in the chain of the EGM it named (`egm:<id>`), or in
the casino's chain when the CMS has no such EGM; a FUNDING_REJECTED record carries the
request, the code and HTTP status it was answered with, and its gaming day. The ledger's
`balanced` flag in `GET /_sim/state` checks each ledger transaction on its own, not just the
total of all entries, so two hand-made errors that cancel out are still reported.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, insert, select

from sim_cms import audit
from sim_cms.models import LedgerEntry, LedgerTransaction, LedgerWipe
from sim_cms.seed import meter_account_id, settlement_account_id
from tests.api.test_funding_api import ADMIN, EGM, app, auth, client, funding, post

pytestmark = pytest.mark.db
__all__ = ["app", "auth", "client"]  # the fixtures, used by name


def audit_trail(app: Flask, subject: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The audit records filed under `subject`, oldest first: (chain, kind, payload)."""
    with app.extensions["sim_cms"].db.read() as session:
        return [(record.chain, record.kind, json.loads(record.payload))
                for record in audit.records_for(session, subject)]


def test_a_refusal_is_audited_with_its_request_code_status_and_gaming_day(
    app: Flask, client: FlaskClient, auth: dict[str, str],
) -> None:
    """The FUNDING_REJECTED record is the auditor's copy of the answer: the request's six
    fields under their wire names, plus the code and status TPAS got and the gaming day."""
    body = funding("tx-big", amount=10**9)
    refused = post(client, auth, body)
    assert (refused.status_code, refused.get_json()["code"]) == (422, "CREDIT_LIMIT_EXCEEDED")
    ((_, kind, payload),) = audit_trail(app, "tx-big")
    assert kind == "FUNDING_REJECTED"
    assert payload == {**body, "code": "CREDIT_LIMIT_EXCEEDED", "httpStatus": 422,
                       "gamingDay": "2026-11-25"}


def test_decisions_on_a_known_egm_go_to_its_own_chain(
    app: Flask, client: FlaskClient, auth: dict[str, str],
) -> None:
    """A refusal on EGM-001, and a later reuse of its transactionId, are both recorded in
    EGM-001's chain, `egm:EGM-001`, next to its other fundings."""
    assert post(client, auth, funding("tx-big", amount=10**9)).status_code == 422
    assert post(client, auth, funding("tx-big", amount=1)).status_code == 422  # key reused
    trail = audit_trail(app, "tx-big")
    assert [(chain, kind) for chain, kind, _ in trail] == [
        (f"egm:{EGM}", "FUNDING_REJECTED"), (f"egm:{EGM}", "FUNDING_KEY_REUSED")]


def test_decisions_on_an_egm_the_cms_does_not_have_go_to_the_casino_chain(
    app: Flask, client: FlaskClient, auth: dict[str, str],
) -> None:
    """A funding naming no EGM of this casino has no EGM chain to go to: its 404, and a
    reuse of its transactionId, are recorded in the casino's chain (and no `egm:EGM-999`
    chain is started)."""
    refused = post(client, auth, funding("tx-ghost", egmId="EGM-999"))
    assert (refused.status_code, refused.get_json()["code"]) == (404, "EGM_NOT_FOUND")
    assert post(client, auth, funding("tx-ghost", egmId="EGM-999", amount=1)) \
        .status_code == 422
    trail = audit_trail(app, "tx-ghost")
    assert [(chain, kind) for chain, kind, _ in trail] == [
        (audit.CASINO_CHAIN, "FUNDING_REJECTED"), (audit.CASINO_CHAIN, "FUNDING_KEY_REUSED")]
    assert trail[0][2]["code"] == "EGM_NOT_FOUND"


def test_the_ledger_is_unbalanced_when_two_transactions_are_off_by_opposite_amounts(
    app: Flask, client: FlaskClient, auth: dict[str, str],
) -> None:
    """The database refuses an unbalanced ledger transaction, except through the escape
    hatch a reset of the whole sim uses (a `ledger_wipe` row lets DELETE through). A
    hand-made "fix" that takes that hatch and removes tx-1's settlement leg and tx-2's meter
    leg leaves all entries summing to zero, yet two transactions that do not balance:
    `GET /_sim/state` must say so."""
    assert post(client, auth, funding("tx-1")).status_code == 201
    assert post(client, auth, funding("tx-2")).status_code == 201
    before = client.get("/_sim/state", headers=ADMIN).get_json()["ledger"]
    assert (before["transactions"], before["entries"], before["balanced"]) == (2, 4, True)

    def leg(reference: str, account: str) -> Any:
        return (select(LedgerEntry.id).join(
            LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(LedgerTransaction.reference == reference, LedgerEntry.account_id == account)
            .scalar_subquery())

    with app.extensions["sim_cms"].db.engine.connect() as connection, connection.begin():
        connection.execute(insert(LedgerWipe).values(id=1))
        connection.execute(delete(LedgerEntry).where(
            LedgerEntry.id.in_([leg("tx-1", settlement_account_id("USD")),
                                leg("tx-2", meter_account_id(EGM))])))
        connection.execute(delete(LedgerWipe))

    after = client.get("/_sim/state", headers=ADMIN).get_json()["ledger"]
    assert (after["transactions"], after["entries"], after["balanced"]) == (2, 2, False)
