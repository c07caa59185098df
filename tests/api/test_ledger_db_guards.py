"""The database guards the ledger by itself (migration 0003), on SQLite and PostgreSQL alike.

Statements here bypass the funding service, as a bug, a hand-written fix or a future writer
would: every UPDATE and DELETE of a ledger row, and every insert that would leave a ledger
transaction unbalanced, is refused by the database and changes nothing; fundings, and the
control API's reset of the whole sim, still work.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Connection, func, insert, select, text
from sqlalchemy.exc import IntegrityError

from sim_cms import ledger
from sim_cms.funding import decide
from sim_cms.funding.requests import FundingRequest
from sim_cms.models import LedgerEntry, LedgerTransaction, LedgerWipe, QrDisplay
from sim_cms.seed import meter_account_id, settlement_account_id
from simkit.db import Database
from simkit.money import MinorUnits
from tests.conftest import ADMIN_TOKEN, CmsFactory

pytestmark = pytest.mark.db

SETTLEMENT = settlement_account_id("USD")
METER = meter_account_id("EGM-001")
APPEND_ONLY = "append-only"
UNBALANCED = "does not balance"
NO_ACCOUNT = "names no account"


@pytest.fixture
def app(make_cms: CmsFactory) -> Flask:
    """sim_cms after one applied funding of 2500 to EGM-001 (ledger transaction `tx-1`)."""
    built = make_cms()
    assert fund(built, "tx-1").http_status == 201
    return built


def db_of(app: Flask) -> Database:
    database: Database = app.extensions["sim_cms"].db
    return database


def now_of(app: Flask) -> datetime:
    moment: datetime = app.extensions["sim_cms"].clock.now()
    return moment


def fund(app: Flask, transaction_id: str, amount: int = 2500) -> Any:
    """Apply a funding through the service (on PostgreSQL: its one-statement hot path)."""
    ctx = app.extensions["sim_cms"]
    qr = f"qr-{transaction_id}"
    with ctx.db.write() as session:
        session.add(QrDisplay(qr_token_id=qr, egm_id="EGM-001", url="u", token="t",
                              expires_at=now_of(app), rotates_at=now_of(app),
                              displayed_at=now_of(app)))
    request = FundingRequest(transaction_id, "EGM-001", MinorUnits(amount), "USD", "ubai-1", qr)
    return decide.post_transaction(ctx.db, request, ctx.settings, now_of(app))


@pytest.fixture
def connection(app: Flask) -> Iterator[Connection]:
    """A raw connection to the CMS's database, in a transaction that commits at the end."""
    with db_of(app).engine.connect() as conn, conn.begin():
        yield conn


def ledger_rows(app: Flask) -> list[tuple[Any, ...]]:
    """Every ledger leg with its header, as committed."""
    with db_of(app).engine.connect() as conn:
        return [tuple(row) for row in conn.execute(
            select(LedgerTransaction.id, LedgerTransaction.reference, LedgerTransaction.kind,
                   LedgerEntry.id, LedgerEntry.account_id, LedgerEntry.amount)
            .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
            .order_by(LedgerEntry.id))]


def accounts(app: Flask) -> list[tuple[Any, ...]]:
    """Every account of the ledger (settlement and meters), as committed."""
    with db_of(app).engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(
            "SELECT id, kind, currency, egm_id FROM accounts ORDER BY id"))]


def first_transaction_id(app: Flask) -> int:
    with db_of(app).engine.connect() as conn:
        return int(conn.scalar(select(func.min(LedgerTransaction.id))) or 0)


def insert_legs(conn: Connection, transaction_id: int, *amounts: int) -> None:
    """Legs in one statement, as the funding paths write them, alternating the two accounts."""
    values = ", ".join(f"(:tx, :account{n}, :amount{n}, 'USD')" for n in range(len(amounts)))
    params: dict[str, Any] = {"tx": transaction_id}
    for n, amount in enumerate(amounts):
        params[f"account{n}"], params[f"amount{n}"] = (SETTLEMENT, METER)[n % 2], amount
    conn.execute(text("INSERT INTO ledger_entries (transaction_id, account_id, amount, currency)"
                      f" VALUES {values}"), params)


def insert_header(conn: Connection, transaction_id: int, reference: str, now: datetime) -> None:
    conn.execute(insert(LedgerTransaction).values(
        id=transaction_id, reference=reference, kind="FUNDING", created_at=now))


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_entries SET amount = amount + 1",
    "UPDATE ledger_entries SET account_id = :meter WHERE account_id = :settlement",
    "UPDATE ledger_transactions SET reference = 'rewritten'",
    "UPDATE ledger_transactions SET kind = kind",
])
def test_an_update_of_a_ledger_row_is_refused(app: Flask, statement: str) -> None:
    before = ledger_rows(app)
    with pytest.raises(IntegrityError, match=APPEND_ONLY), db_of(app).engine.begin() as conn:
        conn.execute(text(statement), {"meter": METER, "settlement": SETTLEMENT})
    assert ledger_rows(app) == before


@pytest.mark.parametrize("statement", [
    "DELETE FROM ledger_entries",
    "DELETE FROM ledger_entries WHERE amount > 0",
    "DELETE FROM ledger_transactions",
])
def test_a_delete_of_a_ledger_row_is_refused(app: Flask, statement: str) -> None:
    before = ledger_rows(app)
    with pytest.raises(IntegrityError, match=APPEND_ONLY), db_of(app).engine.begin() as conn:
        conn.execute(text(statement))
    assert ledger_rows(app) == before


@pytest.mark.parametrize("statement", [
    "TRUNCATE ledger_entries, ledger_transactions", "TRUNCATE accounts CASCADE"])
def test_truncating_the_ledger_or_its_accounts_is_refused_on_postgresql(
    app: Flask, statement: str,
) -> None:
    if db_of(app).is_sqlite:
        pytest.skip("SQLite has no TRUNCATE (its DELETE without WHERE fires the triggers)")
    before = ledger_rows(app), accounts(app)
    with pytest.raises(IntegrityError, match=APPEND_ONLY), db_of(app).engine.begin() as conn:
        conn.execute(text(statement))
    assert (ledger_rows(app), accounts(app)) == before


def test_a_leg_added_to_a_written_transaction_is_refused(app: Flask) -> None:
    before = ledger_rows(app)
    with pytest.raises(IntegrityError), db_of(app).engine.begin() as conn:
        insert_legs(conn, first_transaction_id(app), 1)
    assert ledger_rows(app) == before


@pytest.mark.parametrize("amounts", [(-100, 101), (-100,), (100, 100), (-100, 50, 49)])
def test_a_new_transaction_whose_legs_do_not_balance_is_refused(
    app: Flask, amounts: tuple[int, ...],
) -> None:
    """Legs first, then the header (the order the SQLite path writes them in)."""
    before = ledger_rows(app)
    with pytest.raises(IntegrityError, match=UNBALANCED), db_of(app).engine.begin() as conn:
        insert_legs(conn, 1000, *amounts)
        insert_header(conn, 1000, "unbalanced", now_of(app))
    assert ledger_rows(app) == before


@pytest.mark.parametrize("unknown", ["settlement:nobody:USD", "egm:EGM-404"])
def test_balanced_legs_on_an_account_that_does_not_exist_are_refused(
    app: Flask, unknown: str,
) -> None:
    """No foreign key does this (it would lock the settlement account for every funding):
    the ledger's triggers look each new leg's account up."""
    before = ledger_rows(app)
    with pytest.raises(IntegrityError, match=NO_ACCOUNT), db_of(app).engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO ledger_entries (transaction_id, account_id, amount, currency) "
            "VALUES (1000, :settlement, -100, 'USD'), (1000, :unknown, 100, 'USD')"),
            {"settlement": SETTLEMENT, "unknown": unknown})
        insert_header(conn, 1000, "to-nowhere", now_of(app))
    assert ledger_rows(app) == before


@pytest.mark.parametrize("statement", [
    "UPDATE accounts SET id = 'renamed' WHERE id = :settlement",
    "UPDATE accounts SET currency = 'EUR'",
    "DELETE FROM accounts WHERE id = :meter",
    "DELETE FROM accounts",
])
def test_an_account_a_leg_may_name_is_never_changed_or_deleted(
    app: Flask, statement: str,
) -> None:
    before = accounts(app)
    with pytest.raises(IntegrityError, match=APPEND_ONLY), db_of(app).engine.begin() as conn:
        conn.execute(text(statement), {"meter": METER, "settlement": SETTLEMENT})
    assert accounts(app) == before


def test_legs_without_their_transaction_are_refused_at_commit(app: Flask) -> None:
    before = ledger_rows(app)
    with pytest.raises(IntegrityError), db_of(app).engine.begin() as conn:
        insert_legs(conn, 1000, -100, 100)
    assert ledger_rows(app) == before


def test_a_balanced_transaction_written_by_hand_is_accepted(app: Flask) -> None:
    """The guards refuse what is wrong, not hand-written rows as such."""
    with db_of(app).engine.begin() as conn:
        insert_legs(conn, 1000, -100, 60, 0, 40)
        insert_header(conn, 1000, "by-hand", now_of(app))
    with db_of(app).read() as session:
        assert ledger.ledger_sums_to_zero(session)
        assert ledger.ledger_summary(session)["entries"] == 2 + 4


def test_the_general_write_path_writes_a_transaction_the_guards_accept(app: Flask) -> None:
    """`insert_transaction` (SQLite's funding path) writes the legs first, on both dialects."""
    with db_of(app).write() as session:
        written = ledger.insert_transaction(
            session.connection(), "by-the-service", "FUNDING", currency="USD",
            now=now_of(app), legs=[(SETTLEMENT, MinorUnits(-700)), (METER, MinorUnits(700))])
    assert [row[1:3] + row[4:] for row in ledger_rows(app) if row[0] == written] == [
        ("by-the-service", "FUNDING", SETTLEMENT, -700), ("by-the-service", "FUNDING", METER, 700)]
    assert fund(app, "tx-2").http_status == 201  # the ids that follow are still free


def test_fundings_still_apply_and_balance(app: Flask) -> None:
    for n in range(2, 5):
        assert fund(app, f"tx-{n}", amount=100 * n).http_status == 201
    with db_of(app).read() as session:
        assert ledger.ledger_sums_to_zero(session)
        assert ledger.meter_matches_entries(session, "EGM-001")
        assert ledger.account_balance(session, METER) == 2500 + 200 + 300 + 400
        assert ledger.ledger_summary(session)["transactions"] == 4
    # Each header names what moved the money and under which transactionId, on either path.
    assert {row[1:3] for row in ledger_rows(app)} == {(f"tx-{n}", "FUNDING") for n in range(1, 5)}


def test_the_reset_of_the_whole_sim_empties_the_ledger_and_keeps_its_guards(app: Flask) -> None:
    client = app.test_client()
    response = client.post("/_sim/reset", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert ledger_rows(app) == []
    with db_of(app).read() as session:
        assert session.scalar(select(func.count()).select_from(LedgerWipe)) == 0
    assert fund(app, "tx-after-reset").http_status == 201
    with pytest.raises(IntegrityError, match=APPEND_ONLY), db_of(app).engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_entries"))
    assert len(ledger_rows(app)) == 2


class RolledBack(Exception):
    """Raised to roll a unit of work back."""


def test_the_ledger_check_still_finds_an_unbalanced_entry_past_the_guards(app: Flask) -> None:
    """`ledger_sums_to_zero` is the guards' second line (reports, reconciliation): lift the
    guards inside a transaction that rolls back, and it must see the planted leg."""
    database = db_of(app)
    lift = ("DROP TRIGGER ledger_entries_before_header" if database.is_sqlite else
            "ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_balanced")
    with pytest.raises(RolledBack), database.write() as session:
        session.execute(text(lift))
        insert_legs(session.connection(), first_transaction_id(app), 1)
        assert not ledger.ledger_sums_to_zero(session)
        raise RolledBack
    with database.read() as session:
        assert ledger.ledger_sums_to_zero(session)
