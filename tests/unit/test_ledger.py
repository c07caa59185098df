"""The ledger service: exactly-once posting under races, the retry on a unique-key collision,
balanced entries, and the invariant checks the property tests rely on."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import delete, func, select, update

from sim_cms import audit, ledger
from sim_cms.funding import decide
from sim_cms.funding.requests import FundingOutcome, FundingRequest, parse_funding_request
from sim_cms.models import AuditHead, AuditRecord, Egm, LedgerEntry, LedgerTransaction, QrDisplay
from sim_cms.seed import meter_account_id, settlement_account_id
from sim_cms.settings import CmsSettings
from simkit.db import Database
from simkit.errors import SimError
from simkit.money import MAX_MINOR, MinorUnits
from tests.conftest import CmsFactory

pytestmark = pytest.mark.db

EGMS = [f"EGM-{n:03d}" for n in range(1, 9)]


def qr(egm_id: str) -> str:
    return f"qr-{egm_id}"


@pytest.fixture
def app(make_cms: CmsFactory) -> Flask:
    """sim_cms with a QR displayed on each of EGM-001..EGM-008."""
    built = make_cms()
    ctx = built.extensions["sim_cms"]
    now = ctx.clock.now()
    with ctx.db.write() as session:
        for egm_id in EGMS:
            session.add(QrDisplay(qr_token_id=qr(egm_id), egm_id=egm_id, url="u", token="t",
                                  expires_at=now, rotates_at=now, displayed_at=now))
    return built


def request(transaction_id: str = "tx-1", egm_id: str = "EGM-001", amount: int = 2000,
            ubai: str = "ubai-1") -> FundingRequest:
    return FundingRequest(transaction_id, egm_id, MinorUnits(amount), "USD", ubai, qr(egm_id))


def post(app: Flask, funding: FundingRequest) -> FundingOutcome:
    ctx = app.extensions["sim_cms"]
    settings: CmsSettings = ctx.settings
    now: datetime = ctx.clock.now()
    return decide.post_transaction(ctx.db, funding, settings, now)


def db_of(app: Flask) -> Database:
    database: Database = app.extensions["sim_cms"].db
    return database


def ledger_transactions(app: Flask) -> int:
    with db_of(app).read() as session:
        return int(session.scalar(select(func.count()).select_from(LedgerTransaction)) or 0)


def in_threads(count: int, work: Callable[[int], FundingOutcome]) -> list[FundingOutcome]:
    """Run `work(i)` for i in range(count) at once (a barrier lines the threads up)."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except Exception as exc:  # surfaced by the assertion below
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors = [r for r in results if not isinstance(r, FundingOutcome)]
    assert not errors, errors
    return results


def test_posting_writes_two_legs_that_move_money_from_settlement_to_the_meter(
    app: Flask,
) -> None:
    outcome = post(app, request(amount=2500))
    assert (outcome.http_status, outcome.replayed) == (201, False)
    with db_of(app).read() as session:
        legs = {(e.account_id, e.amount) for e in session.scalars(select(LedgerEntry))}
        assert legs == {(settlement_account_id("USD"), -2500), (meter_account_id("EGM-001"), 2500)}
        assert ledger.ledger_sums_to_zero(session)
        assert ledger.meter_matches_entries(session, "EGM-001")
        assert ledger.ledger_summary(session) == {
            "transactions": 1, "entries": 2, "appliedTotal": 2500, "balanced": True}


def test_identical_concurrent_requests_credit_once(app: Flask) -> None:
    outcomes = in_threads(8, lambda _: post(app, request()))
    assert Counter((o.http_status, o.replayed) for o in outcomes) == {(201, False): 1,
                                                                      (201, True): 7}
    assert len({o.body for o in outcomes}) == 1
    assert ledger_transactions(app) == 1


def test_one_new_transaction_id_raced_onto_many_egms_is_decided_once(app: Flask) -> None:
    """Different EGM rows are locked, so only the unique keys (and the retry) stop a double."""
    outcomes = in_threads(8, lambda i: post(app, request(egm_id=EGMS[i])))
    assert Counter(o.http_status for o in outcomes) == {201: 1, 422: 7}
    assert {o.code for o in outcomes if o.http_status == 422} == {"IDEMPOTENCY_KEY_REUSED"}
    assert ledger_transactions(app) == 1
    with db_of(app).read() as session:
        meters = [session.get(Egm, egm_id).credit_meter for egm_id in EGMS]  # type: ignore[union-attr]
    assert sorted(meters) == [0] * 7 + [2000]


@pytest.mark.parametrize("usage_row", ["new", "existing"])
def test_racing_fundings_on_one_ubai_never_exceed_its_limit(app: Flask, usage_row: str) -> None:
    """The limit (100000) has room for one of the racers, whether or not today's usage row
    exists yet (creating it and locking it are different paths)."""
    used = 0
    if usage_row == "existing":
        used = 10_000
        assert post(app, request("tx-first", "EGM-008", amount=used)).http_status == 201
    outcomes = in_threads(7, lambda i: post(app, request(f"tx-{i}", EGMS[i], amount=60_000)))
    assert Counter(o.code for o in outcomes) == {None: 1, "DAILY_LIMIT_EXCEEDED": 6}
    assert ledger_transactions(app) == 1 + (used > 0)


def test_racing_fundings_on_one_qr_token_credit_it_once(app: Flask) -> None:
    """Seven different transactionIds naming one QR token at once: one credit, six refusals
    (on PostgreSQL the losers of the hot path fail on the token's claim and are decided
    again on the general path)."""
    outcomes = in_threads(7, lambda i: post(app, request(f"tx-{i}", "EGM-001", ubai=f"u-{i}")))
    assert Counter(o.code for o in outcomes) == {None: 1, "QR_TOKEN_USED": 6}
    assert ledger_transactions(app) == 1
    with db_of(app).read() as session:
        assert session.get(Egm, "EGM-001").credit_meter == 2000  # type: ignore[union-attr]


@pytest.mark.parametrize(("second", "expected"), [
    (request(egm_id="EGM-002"), (422, "IDEMPOTENCY_KEY_REUSED", False)),
    (request(), (201, None, True)),
])
def test_a_lost_unique_key_race_is_retried_and_sees_the_winner(
    app: Flask, monkeypatch: pytest.MonkeyPatch, second: FundingRequest,
    expected: tuple[int, str | None, bool],
) -> None:
    """Simulates the racer's commit landing between our lookup and our insert (on
    PostgreSQL, a twin committed while we waited for the EGM lock is not in our snapshot)."""
    post(app, request())
    real_lock = ledger.lock_for_funding
    blind_calls = iter([True])  # the first unit of work sees no stored outcome

    def racing_lock(connection: Any, funding: FundingRequest) -> Any:
        row = real_lock(connection, funding)
        if row is None or not next(blind_calls, False):
            return row
        return SimpleNamespace(**{**row._mapping, "transaction_id": None})

    monkeypatch.setattr(ledger, "lock_for_funding", racing_lock)
    outcome = post(app, second)
    assert (outcome.http_status, outcome.code, outcome.replayed) == expected
    assert ledger_transactions(app) == 1


def test_a_request_that_keeps_losing_the_race_is_told_to_retry(
    app: Flask, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two lost unique-key races in a row (a third party winning each time): 409
    FUNDING_IN_PROGRESS naming the transactionId, nothing written twice."""
    post(app, request())
    real_lock = ledger.lock_for_funding

    def blind_lock(connection: Any, funding: FundingRequest) -> Any:
        row = real_lock(connection, funding)
        return row if row is None else SimpleNamespace(**{**row._mapping, "transaction_id": None})

    monkeypatch.setattr(ledger, "lock_for_funding", blind_lock)
    with pytest.raises(SimError) as refused:
        post(app, request(egm_id="EGM-002"))
    assert (refused.value.code, refused.value.http_status) == ("FUNDING_IN_PROGRESS", 409)
    assert refused.value.extra == {"transactionId": request().transaction_id}
    assert ledger_transactions(app) == 1


def test_ledger_checks_find_a_drifted_meter(app: Flask) -> None:
    """(An unbalanced entry is refused by the database itself: tests/api/test_ledger_db_guards.)"""
    post(app, request())
    post(app, request("tx-2", egm_id="EGM-002", amount=1))
    with db_of(app).write() as session:
        session.execute(update(Egm).where(Egm.id == "EGM-001").values(credit_meter=1999))
        session.execute(update(Egm).where(Egm.id == "EGM-002").values(credit_meter=0))
    with db_of(app).read() as session:
        assert ledger.ledger_sums_to_zero(session)
        assert not ledger.meter_matches_entries(session, "EGM-001")
        assert not ledger.meter_matches_entries(session, "EGM-002")
        assert not ledger.meter_matches_entries(session, "EGM-404")


def test_fingerprint_changes_with_every_field_and_only_with_fields() -> None:
    body = {"transactionId": "tx-1", "egmId": "EGM-001", "amount": 2000, "currency": "USD",
            "ubai": "u", "qrTokenId": "q"}
    base = parse_funding_request(body)
    assert parse_funding_request({**body, "extra": 1}).fingerprint() == base.fingerprint()
    changed = [replace(base, transaction_id="tx-2"), replace(base, egm_id="EGM-002"),
               replace(base, amount=MinorUnits(2001)), replace(base, currency="EUR"),
               replace(base, ubai="v"), replace(base, qr_token_id="r")]
    assert len({base.fingerprint(), *(c.fingerprint() for c in changed)}) == 7


@pytest.mark.parametrize("amount", [MAX_MINOR, -MAX_MINOR])
def test_an_amount_at_the_bound_is_well_formed(amount: int) -> None:
    """The bound is inclusive (as the OpenAPI document's maximum): only the decision may
    refuse such an amount, by the EGM's cap or the daily limit."""
    body = {"transactionId": "tx-1", "egmId": "EGM-001", "amount": amount, "currency": "USD",
            "ubai": "u", "qrTokenId": "q"}
    assert parse_funding_request(body).amount == amount
    with pytest.raises(SimError, match=f"at most {MAX_MINOR}") as refused:
        parse_funding_request({**body, "amount": amount + (1 if amount > 0 else -1)})
    assert (refused.value.http_status, refused.value.extra.get("field")) == (400, "amount")


def test_unbalanced_legs_are_refused_before_anything_is_written(app: Flask) -> None:
    with pytest.raises(ValueError, match="does not balance"), db_of(app).write() as session:
        ledger.insert_transaction(session.connection(), "bad", "FUNDING", currency="USD",
                                      now=app.extensions["sim_cms"].clock.now(),
                                      legs=[("a", MinorUnits(-1)), ("b", MinorUnits(2))])
    assert ledger_transactions(app) == 0


@pytest.mark.parametrize("outcome", ["applied", "rejected"])
def test_a_funding_recreates_an_emptied_audit_chain(app: Flask, outcome: str) -> None:
    """A hand-emptied audit log and head must not break fundings (nor lose their record)."""
    with db_of(app).write() as session:
        session.execute(delete(AuditRecord))
        session.execute(delete(AuditHead))
    funding = request() if outcome == "applied" else request(egm_id="EGM-404")
    assert post(app, funding).http_status == (201 if outcome == "applied" else 404)
    with db_of(app).read() as session:
        assert audit.verify_chain(session) == audit.VerifyResult(ok=True, length=1)
        assert [r.subject for r in audit.records_for(session, "tx-1")] == ["tx-1"]
