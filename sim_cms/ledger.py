"""The double-entry ledger: `post_transaction` is the only writer of ledger rows, funding
records and the running totals (the EGM's credit meter, a UBAI's daily usage).

One funding is one database transaction: lock the EGM row, look the transactionId up, decide,
and then either store the rejection or write a balanced ledger transaction, move the meter
and the usage, store the answer, and append the audit record. Locks are always taken in the
order EGM row, usage row, audit head, so two fundings can wait on each other but never
deadlock. On SQLite the writer's `BEGIN IMMEDIATE` serialises whole units of work; on
PostgreSQL the row locks do, and the unique keys on `funding_records.transaction_id` and
`ledger_transactions.reference` catch the one race the locks cannot: the same new
transactionId sent for two different EGMs at once. The loser retries once and then sees the
winner's record.

Rows are only inserted; the two running totals are the only values ever updated, and the
invariant helpers below check that they equal the sums of the entries behind them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sim_cms import audit, egms, limits, qr_display
from sim_cms.funding import (
    FundingOutcome,
    FundingRequest,
    applied_body,
    rejection_body,
)
from sim_cms.models import Egm, FundingRecord, LedgerEntry, LedgerTransaction, LimitUsage
from sim_cms.seed import meter_account_id, settlement_account_id
from sim_cms.settings import CmsSettings
from simkit.db import Database
from simkit.errors import SimError

# EGM states that refuse credit, with the status and code each answers.
_STATE_REFUSALS: dict[str, tuple[int, str, str]] = {
    "OFFLINE": (503, "EGM_OFFLINE", "is offline"),
    "IN_GAME": (409, "EGM_BUSY", "is in a game"),
    "DOOR_OPEN": (409, "EGM_DOOR_OPEN", "has its door open"),
    "TILT": (409, "EGM_TILT", "is in tilt"),
}


def post_transaction(
    db: Database, request: FundingRequest, settings: CmsSettings, now: datetime,
) -> FundingOutcome:
    """Decide a funding exactly once and return the answer to send (stored or replayed).

    A known transactionId with the same fingerprint replays the stored answer without
    taking the write lock; a changed body is 422 IDEMPOTENCY_KEY_REUSED (audited, not
    stored). A unique-key collision with a racing request for the same new transactionId
    is retried once, which then finds the racer's committed record.
    """
    with db.read() as session:
        known = get_funding(session, request.transaction_id)
    if known is not None and known.fingerprint == request.fingerprint():
        return FundingOutcome.from_record(known, replayed=True)
    try:
        return _decide(db, request, settings, now)
    except IntegrityError:
        pass
    try:
        return _decide(db, request, settings, now)
    except IntegrityError as exc:  # a third party keeps winning: let the caller retry
        raise SimError("FUNDING_IN_PROGRESS", 409,
                       "another request with this transactionId is being decided; retry",
                       transactionId=request.transaction_id) from exc


def _decide(
    db: Database, request: FundingRequest, settings: CmsSettings, now: datetime,
) -> FundingOutcome:
    """One unit of work: lock, look up, decide, store (see the module docstring)."""
    with db.write() as session:
        egm = egms.lock_egm(session, request.egm_id)
        known = get_funding(session, request.transaction_id)
        if known is not None:
            return _replay_or_refuse_reuse(session, known, request, now)
        day = limits.gaming_day(now, settings)
        refusal = _refusal_before_limits(session, egm, request)
        if refusal is not None or egm is None:
            return _store_rejection(session, request, refusal, day, now)
        usage = limits.lock_usage(session, request.ubai, day)
        refusal = _refusal_by_limits(session, egm, usage, request, settings)
        if refusal is not None:
            return _store_rejection(session, request, refusal, day, now)
        return _apply(session, egm, usage, request, day=day, now=now)


def _replay_or_refuse_reuse(
    session: Session, known: FundingRecord, request: FundingRequest, now: datetime,
) -> FundingOutcome:
    """The stored answer for an identical retry; 422 (audited, not stored) for a changed one."""
    fingerprint = request.fingerprint()
    if known.fingerprint == fingerprint:
        return FundingOutcome.from_record(known, replayed=True)
    error = SimError(
        "IDEMPOTENCY_KEY_REUSED", 422,
        "this transactionId was already used for a different request; use a new one",
        transactionId=request.transaction_id,
    )
    audit.append(session, kind="FUNDING_KEY_REUSED", subject=request.transaction_id, now=now,
                 payload={**request.wire(), "fingerprint": fingerprint,
                          "storedFingerprint": known.fingerprint})
    return FundingOutcome(error.http_status, rejection_body(error), error.code)


def _refusal_before_limits(
    session: Session, egm: Egm | None, request: FundingRequest,
) -> SimError | None:
    """EGM existence and state, amount and currency, and the displayed QR, in that order."""
    tid = request.transaction_id
    if egm is None:
        return SimError("EGM_NOT_FOUND", 404, f"EGM {request.egm_id} does not exist",
                        transactionId=tid, egmId=request.egm_id)
    if egm.state != "IDLE":  # a state this code does not know refuses credit like OFFLINE
        status, code, what = _STATE_REFUSALS.get(egm.state, _STATE_REFUSALS["OFFLINE"])
        return SimError(code, status, f"EGM {egm.id} {what}", transactionId=tid,
                        egmId=egm.id, state=egm.state)
    if request.amount <= 0:
        return SimError("INVALID_AMOUNT", 422, "amount must be greater than zero",
                        transactionId=tid, field="amount")
    if request.currency != egm.currency:
        return SimError("INVALID_AMOUNT", 422, f"EGM {egm.id} takes credit in {egm.currency}",
                        transactionId=tid, field="currency", expected=egm.currency)
    if not qr_display.was_displayed(session, egm.id, request.qr_token_id):
        return SimError("QR_TOKEN_MISMATCH", 422,
                        f"QR token {request.qr_token_id} was not displayed on EGM {egm.id}",
                        transactionId=tid, egmId=egm.id)
    return None


def _refusal_by_limits(
    session: Session, egm: Egm, usage: LimitUsage, request: FundingRequest,
    settings: CmsSettings,
) -> SimError | None:
    """The EGM's credit cap, then the UBAI's daily limit (its usage row is locked)."""
    tid = request.transaction_id
    if egm.credit_meter + request.amount > egm.credit_limit:
        available = max(0, egm.credit_limit - egm.credit_meter)
        return SimError("CREDIT_LIMIT_EXCEEDED", 422,
                        f"EGM {egm.id} can take at most {available} more",
                        transactionId=tid, egmId=egm.id, creditMeter=egm.credit_meter,
                        creditLimit=egm.credit_limit, available=available)
    limit = limits.effective_limit(session, request.ubai, settings)
    if usage.used + request.amount > limit:
        remaining = max(0, limit - usage.used)
        return SimError("DAILY_LIMIT_EXCEEDED", 422,
                        f"the daily limit leaves {remaining} for this gaming day",
                        transactionId=tid, remaining=remaining, dailyLimit=limit,
                        gamingDay=usage.gaming_day.isoformat())
    return None


def _record(request: FundingRequest, outcome: FundingOutcome, day: date,
            now: datetime) -> FundingRecord:
    return FundingRecord(
        transaction_id=request.transaction_id, fingerprint=request.fingerprint(),
        outcome="REJECTED" if outcome.code else "APPLIED", http_status=outcome.http_status,
        error_code=outcome.code, response_body=outcome.body, egm_id=request.egm_id,
        ubai=request.ubai, amount=request.amount, currency=request.currency,
        qr_token_id=request.qr_token_id, gaming_day=day, created_at=now,
    )


def _store_rejection(
    session: Session, request: FundingRequest, error: SimError | None, day: date,
    now: datetime,
) -> FundingOutcome:
    """Store a decided rejection under the transactionId and audit it; nothing is applied."""
    assert error is not None
    outcome = FundingOutcome(error.http_status, rejection_body(error), error.code)
    session.add(_record(request, outcome, day, now))
    session.flush()  # a racing twin fails here, on the primary key, before the audit append
    audit.append(session, kind="FUNDING_REJECTED", subject=request.transaction_id, now=now,
                 payload={**request.wire(), "code": error.code, "httpStatus": error.http_status,
                          "gamingDay": day.isoformat()})
    return outcome


def _apply(
    session: Session, egm: Egm, usage: LimitUsage, request: FundingRequest, *, day: date,
    now: datetime,
) -> FundingOutcome:
    """Move the money: balanced entries, meter, usage, stored 201 answer, audit record."""
    _post_entries(session, request.transaction_id, "FUNDING", currency=request.currency,
                  now=now, legs=[(settlement_account_id(request.currency), -request.amount),
                                 (meter_account_id(egm.id), request.amount)])
    egm.credit_meter += request.amount
    usage.used += request.amount
    outcome = FundingOutcome(201, applied_body(request, egm.credit_meter, now))
    session.add(_record(request, outcome, day, now))
    session.flush()
    audit.append(session, kind="FUNDING_APPLIED", subject=request.transaction_id, now=now,
                 payload={**request.wire(), "creditMeter": egm.credit_meter,
                          "usedToday": usage.used, "gamingDay": day.isoformat()})
    return outcome


def _post_entries(
    session: Session, reference: str, kind: str, *, currency: str, now: datetime,
    legs: list[tuple[str, int]],
) -> LedgerTransaction:
    """Insert one transaction and its legs; refuses (as a bug) legs that do not balance."""
    if sum(amount for _, amount in legs) != 0:
        raise ValueError(f"ledger transaction {reference} does not balance: {legs}")
    transaction = LedgerTransaction(reference=reference, kind=kind, created_at=now)
    session.add(transaction)
    session.flush()  # the unique reference fails here for a racing twin
    session.add_all(LedgerEntry(transaction_id=transaction.id, account_id=account,
                                amount=amount, currency=currency) for account, amount in legs)
    return transaction


def get_funding(session: Session, transaction_id: str) -> FundingRecord | None:
    """The decided outcome stored under `transaction_id`, or None if it was never decided."""
    return session.get(FundingRecord, transaction_id, populate_existing=True)


def ledger_sums_to_zero(session: Session) -> bool:
    """Whether every transaction's entries, and hence all entries together, sum to zero."""
    unbalanced = session.execute(
        select(LedgerEntry.transaction_id).group_by(LedgerEntry.transaction_id)
        .having(func.sum(LedgerEntry.amount) != 0).limit(1)
    ).first()
    total = session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0)))
    return unbalanced is None and int(total or 0) == 0


def account_balance(session: Session, account_id: str) -> int:
    """The sum of an account's entries (an EGM meter account's equals its credit meter)."""
    total = session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0))
                           .where(LedgerEntry.account_id == account_id))
    return int(total or 0)


def meter_matches_entries(session: Session, egm_id: str) -> bool:
    """Whether the EGM's running credit meter equals the sum of its meter account's entries."""
    egm = session.get(Egm, egm_id)
    return egm is not None and egm.credit_meter == account_balance(
        session, meter_account_id(egm_id))


def ledger_summary(session: Session) -> dict[str, Any]:
    """Counts and totals for reports and reconciliation (Trustly total = CMS total = meters)."""
    applied = session.scalar(select(func.coalesce(func.sum(FundingRecord.amount), 0))
                             .where(FundingRecord.outcome == "APPLIED"))
    return {
        "transactions": session.scalar(select(func.count()).select_from(LedgerTransaction)),
        "entries": session.scalar(select(func.count()).select_from(LedgerEntry)),
        "appliedTotal": int(applied or 0),
        "balanced": ledger_sums_to_zero(session),
    }
