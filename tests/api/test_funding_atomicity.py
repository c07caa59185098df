"""An applied funding's credit and its audit record are committed together.

On PostgreSQL the common case is written by one statement (`ledger.PG_HOT_CREDIT`): the ledger
rows, the stored answer and the FUNDING_APPLIED record, committed in the same round trip. Only
when the EGM's audit head has gone missing does the hot path append the record in a second
transaction after the credit (`decide.apply_on_hot_path`). A hot path that always fell back
(a wrong chain name, say) would still leave every record in place, so the final state alone
cannot tell; the transaction that wrote each row can: PostgreSQL's `xmin`.
"""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import text

from sim_cms.funding import decide
from sim_cms.funding.requests import FundingRequest
from sim_cms.models import QrDisplay
from simkit.money import MinorUnits
from tests.conftest import CmsFactory

pytestmark = pytest.mark.db


def _fund(app: Flask, transaction_id: str) -> int:
    """Apply a funding through the service; its HTTP status."""
    ctx = app.extensions["sim_cms"]
    now = ctx.clock.now()
    qr = f"qr-{transaction_id}"
    with ctx.db.write() as session:
        session.add(QrDisplay(qr_token_id=qr, egm_id="EGM-001", url="u", token="t",
                              expires_at=now, rotates_at=now, displayed_at=now))
    request = FundingRequest(transaction_id, "EGM-001", MinorUnits(700), "USD", "ubai-1", qr)
    return decide.post_transaction(ctx.db, request, ctx.settings, now).http_status


def _writers(app: Flask, transaction_id: str) -> set[str]:
    """The transactions (xmin) that wrote the funding's ledger header, its stored answer and
    its FUNDING_APPLIED audit record."""
    with app.extensions["sim_cms"].db.engine.connect() as connection:
        return {str(connection.execute(text(statement), {"tid": transaction_id}).scalar_one())
                for statement in (
                    "SELECT xmin FROM ledger_transactions WHERE reference = :tid",
                    "SELECT xmin FROM funding_records WHERE transaction_id = :tid",
                    "SELECT xmin FROM audit_log WHERE subject = :tid"
                    " AND kind = 'FUNDING_APPLIED'")}


def test_a_credit_and_its_audit_record_are_one_transaction(make_cms: CmsFactory) -> None:
    app = make_cms()
    if app.extensions["sim_cms"].db.is_sqlite:
        pytest.skip("SQLite writes a funding in one BEGIN IMMEDIATE unit; xmin is PostgreSQL's")
    assert _fund(app, "tx-first") == 201  # the general path: the EGM's first audited decision
    assert _fund(app, "tx-hot") == 201  # the hot path: one statement
    assert len(_writers(app, "tx-hot")) == 1
