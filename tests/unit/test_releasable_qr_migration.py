"""Upgrading a sim_trustly database from revision 0003 (one payment per QR code, ever) to the
releasable claims of 0004 keeps every payment and its history, and leaves the foreign keys
enforced and intact; on SQLite that upgrade rebuilds the payments table under its events.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.exc import IntegrityError

import sim_trustly
from sim_trustly.tpas.payments import EVENTS, PAYMENTS
from simkit.db import Database
from simkit.migrate import alembic_config, upgrade_to_head
from tests.conftest import DatabaseFactory

pytestmark = pytest.mark.db

MIGRATIONS = Path(sim_trustly.__file__).parent / "migrations"
AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def database(databases: DatabaseFactory) -> Iterator[Database]:
    db = Database(databases.new("upgrade"))
    yield db
    db.dispose()


def _token(connection: Connection, code: str) -> None:
    connection.execute(text(
        "INSERT INTO qr_tokens (code, merchant_id, egm_id, location_id, kid, token, issued_at,"
        " expires_at, used_at) VALUES (:code, 'demo-merchant', 'EGM-001', NULL, 'k1', 'jwt',"
        " :at, :expires, :at)"), {"code": code, "at": AT, "expires": AT + timedelta(minutes=5)})


def _payment(code: str, suffix: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"id": f"pay-{suffix}", "qr_code": code, "merchant_id": "demo-merchant",
            "egm_id": "EGM-001", "amount": 2000, "currency": "USD", "ubai": None,
            "bank_account": None, "status": status, "transaction_id": f"tx-{suffix}",
            "reason": None, "credit_meter": None, "attempts": 0, "created_at": AT,
            "updated_at": AT, "next_attempt_at": None, **extra}


def _at_0003_with_payments(database: Database) -> None:
    command.upgrade(alembic_config(MIGRATIONS, database), "0003")
    with database.engine.begin() as connection:
        for code, status in (("code-a", "CREDITED"), ("code-b", "FAILED_VOIDED")):
            _token(connection, code)
            connection.execute(PAYMENTS.insert(), _payment(code, code[-1], status))
            connection.execute(EVENTS.insert(), [
                {"payment_id": f"pay-{code[-1]}", "at": AT, "kind": kind, "detail": "{}"}
                for kind in ("CREATED", status)])


def test_upgrading_from_0003_keeps_payments_events_and_foreign_keys(database: Database) -> None:
    _at_0003_with_payments(database)
    upgrade_to_head(MIGRATIONS, database)

    with database.engine.connect() as connection:
        rows = connection.execute(
            select(PAYMENTS.c.id, PAYMENTS.c.status, PAYMENTS.c.claim_released_at)
            .order_by(PAYMENTS.c.id)).all()
        assert [tuple(row) for row in rows] == [
            ("pay-a", "CREDITED", None), ("pay-b", "FAILED_VOIDED", None)]
        events = connection.execute(
            select(EVENTS.c.payment_id, EVENTS.c.kind).order_by(EVENTS.c.id)).all()
        assert [tuple(e) for e in events] == [
            ("pay-a", "CREATED"), ("pay-a", "CREDITED"),
            ("pay-b", "CREATED"), ("pay-b", "FAILED_VOIDED")]
        if database.is_sqlite:
            assert connection.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    indexes = {ix["name"]: ix for ix in inspect(database.engine).get_indexes("payments")}
    assert indexes["uq_payments_live_qr_code"]["unique"]
    assert "uq_payments_qr_code" not in {
        uq["name"] for uq in inspect(database.engine).get_unique_constraints("payments")}

    # Foreign keys are enforced again after the upgrade: an event of no payment is refused.
    with pytest.raises(IntegrityError), database.engine.begin() as connection:
        connection.execute(EVENTS.insert(), {"payment_id": "pay-none", "at": AT,
                                             "kind": "CREATED", "detail": "{}"})
    # The old code still holds its claim; once released, the code takes one more payment.
    with pytest.raises(IntegrityError), database.engine.begin() as connection:
        connection.execute(PAYMENTS.insert(), _payment("code-b", "c", "CREATED"))
    with database.engine.begin() as connection:
        connection.execute(PAYMENTS.update().where(PAYMENTS.c.id == "pay-b")
                           .values(claim_released_at=AT))
        connection.execute(PAYMENTS.insert(), _payment("code-b", "c", "CREATED"))


def test_downgrading_to_0003_restores_one_payment_per_code(database: Database) -> None:
    _at_0003_with_payments(database)
    upgrade_to_head(MIGRATIONS, database)
    command.downgrade(alembic_config(MIGRATIONS, database), "0003")
    with database.engine.connect() as connection:
        assert connection.execute(select(PAYMENTS.c.id).order_by(PAYMENTS.c.id)).scalars().all() \
            == ["pay-a", "pay-b"]
    assert "uq_payments_qr_code" in {
        uq["name"] for uq in inspect(database.engine).get_unique_constraints("payments")}
