"""Where a funding is decided: `post_transaction` answers one funding request exactly once
(applied, refused, or the stored answer replayed); `sim_cms.ledger` writes what it decides.

The decision, in order: the transactionId (a replay or a reused key), the EGM's existence
and state, amount and currency, the QR token (displayed on this EGM, not already paid, not
long expired), the EGM's credit cap, the UBAI's daily limit. A refusal is stored and
audited; an acceptance writes a balanced ledger transaction, moves the meter and the usage,
stores the answer and appends the audit record.

One funding is one database transaction: lock the EGM row, look the transactionId up, decide,
and then either store the rejection or write the credit. Locks are always taken in the
order EGM row, usage row, audit chain head (the EGM's chain; the casino's for an unknown
EGM), so two fundings can wait on each other but never deadlock. On SQLite the writer's
`BEGIN IMMEDIATE` serialises whole units of work; on PostgreSQL the row locks do, and the
unique keys on `funding_records.transaction_id` and `ledger_transactions.reference` catch the
one race the locks cannot: the same new transactionId sent for two different EGMs at once.
The loser retries once and then sees the winner's record.

On the happy path one SELECT locks the EGM and reads the stored outcome, the displayed QR
and the UBAI's limit with it, one locks the usage row, then come the writes and the audit
append, and one commit; no rollback. On PostgreSQL `apply_on_hot_path` does the same in two
round trips.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sim_cms import audit, egms, ledger, limits, qr_display
from sim_cms.funding.requests import (
    FundingOutcome,
    FundingRequest,
    StoredOutcome,
    applied_body,
    rejection_body,
)
from sim_cms.seed import meter_account_id, settlement_account_id
from sim_cms.settings import CmsSettings
from simkit.clock import format_instant
from simkit.db import Database
from simkit.errors import SimError
from simkit.hot_connections import HotIntegrityError
from simkit.money import MinorUnits


class EgmLike(Protocol):
    """What the decision reads of an EGM: an `Egm` row object or a Core row alike."""

    @property
    def id(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def credit_meter(self) -> MinorUnits: ...
    @property
    def credit_limit(self) -> MinorUnits: ...
    @property
    def currency(self) -> str: ...


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

    A known transactionId with the same fingerprint replays the stored answer; a changed
    body is 422 IDEMPOTENCY_KEY_REUSED (audited, not stored). A unique-key collision with a
    racing request for the same new transactionId is retried once, which then finds the
    racer's committed record.
    """
    applied = apply_on_hot_path(db, request, settings, now)
    if applied is not None:
        return applied
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


def apply_on_hot_path(
    db: Database, request: FundingRequest, settings: CmsSettings, now: datetime,
) -> FundingOutcome | None:
    """The common case on PostgreSQL, an applied funding, in two round trips; None otherwise.

    One statement moves the meter and the usage by the amount (locking the EGM row and the
    usage row, in that order, as `_decide` does) and reads what the decision needs as it was
    before the move; the same refusal checks as `_decide` run on it; only when they all pass
    does the second statement write the ledger rows, the stored answer and the audit record
    (`ledger.PG_HOT_CREDIT`), committed with it. Anything else (an unknown EGM, a known
    transactionId, any refusal, a racing twin's unique key) rolls the move back and returns
    None, and the caller decides on the general path, which stores and audits its decision.
    """
    if db.is_sqlite or not egms.EGM_ID.fullmatch(request.egm_id):
        return None
    day = limits.gaming_day(now, settings)
    try:
        with db.hot_transaction() as tx:
            row = tx.first(ledger.PG_HOT_MOVE_TOTALS, {
                "egm": request.egm_id, "tid": request.transaction_id, "day": day,
                "plus": request.amount, "qr": request.qr_token_id, "ubai": request.ubai,
                "chain": audit.egm_chain(request.egm_id)})
            if row is None or row.transaction_id is not None or not row.audit_head:
                raise _NotTheCommonCase
            limit = MinorUnits(settings.default_daily_limit) if row.daily_limit is None \
                else row.daily_limit
            if (_refusal_before_limits(None, row, request, displayed_on=row.qr_egm_id)
                    or _refusal_by_qr_use(row, request, expires_at=row.qr_expires_at,
                                          funded_by=row.qr_funded_by, now=now,
                                          grace_s=settings.funding_grace_s)
                    or _refusal_by_limits(None, row, row, request, settings,
                                          daily_limit=limit)):
                raise _NotTheCommonCase
            outcome, legs, payload = _credit(row, row, request, day=day, now=now)
            written = tx.first_and_commit(ledger.PG_HOT_CREDIT, ledger.pg_credit_values(
                request, outcome, legs=legs, day=day, now=now, audit_payload=payload))
    except (_NotTheCommonCase, HotIntegrityError):
        return None
    if written is None:  # the head was deleted by hand meanwhile: the credit is committed
        with db.core_write() as connection:  # and its record is appended after it
            audit.append_core(connection, chain=audit.egm_chain(request.egm_id),
                              kind="FUNDING_APPLIED", subject=request.transaction_id,
                              payload=payload, now=now)
    return outcome


class _NotTheCommonCase(Exception):
    """The hot path rolls back; the general path decides this funding."""


def _decide(
    db: Database, request: FundingRequest, settings: CmsSettings, now: datetime,
) -> FundingOutcome:
    """One unit of work: lock, look up, decide, store (see the module docstring).

    The first statement locks the EGM row and reads the stored outcome, the displayed QR and
    the UBAI's limit with it; on PostgreSQL its lookups see the snapshot from before a wait
    for the lock, so a twin committed meanwhile shows up as the unique-key error that
    `post_transaction` retries.
    """
    with db.write() as session:
        connection = session.connection()
        egm = ledger.lock_for_funding(connection, request) \
            if egms.EGM_ID.fullmatch(request.egm_id) else None
        known = egm if egm is not None else ledger.find_funding(
            connection, request.transaction_id)
        if known is not None and known.transaction_id is not None:
            return _replay_or_refuse_reuse(session, known, request, now,
                                           chain=_chain_of(egm, request))
        day = limits.gaming_day(now, settings)
        refusal = _refusal_before_limits(
            session, egm, request, displayed_on=egm.qr_egm_id if egm is not None else None)
        if refusal is None and egm is not None:
            refusal = _refusal_by_qr_use(egm, request, expires_at=egm.qr_expires_at,
                                         funded_by=egm.qr_funded_by, now=now,
                                         grace_s=settings.funding_grace_s)
        if refusal is not None or egm is None:
            return _store_rejection(session, request, refusal, day, now,
                                    chain=_chain_of(egm, request))
        usage = limits.lock_usage(session, request.ubai, day)
        limit = MinorUnits(settings.default_daily_limit) if egm.daily_limit is None \
            else egm.daily_limit
        refusal = _refusal_by_limits(session, egm, usage, request, settings, daily_limit=limit)
        if refusal is not None:
            return _store_rejection(session, request, refusal, day, now,
                                    chain=_chain_of(egm, request))
        return _apply(session, egm, usage, request, day=day, now=now)


def _chain_of(egm: EgmLike | None, request: FundingRequest) -> str:
    """The audit chain a funding's decision goes to: its EGM's, or the casino's when the
    request names no EGM this CMS has."""
    return audit.CASINO_CHAIN if egm is None else audit.egm_chain(request.egm_id)


def _replay_or_refuse_reuse(
    session: Session, known: StoredOutcome, request: FundingRequest, now: datetime, *,
    chain: str,
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
    audit.append_core(session.connection(), chain=chain, kind="FUNDING_KEY_REUSED",
                      subject=request.transaction_id, now=now,
                      payload={**request.wire(), "fingerprint": fingerprint,
                               "storedFingerprint": known.fingerprint})
    return FundingOutcome(error.http_status, rejection_body(error), error.code)


_LOOK_IT_UP: Any = object()


def _refusal_before_limits(
    session: Session | None, egm: EgmLike | None, request: FundingRequest, *,
    displayed_on: str | None = _LOOK_IT_UP,
) -> SimError | None:
    """EGM existence and state, amount and currency, and the displayed QR, in that order.

    `displayed_on` is the EGM the QR token was shown on (None: never shown), when the
    caller read it with the EGM row; by default it is looked up here.
    """
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
    if displayed_on is _LOOK_IT_UP:
        assert session is not None, "looking the display up needs the unit of work's session"
        displayed_on = egm.id if qr_display.was_displayed(
            session, egm.id, request.qr_token_id) else None
    shown = displayed_on == egm.id
    if not shown:
        return SimError("QR_TOKEN_MISMATCH", 422,
                        f"QR token {request.qr_token_id} was not displayed on EGM {egm.id}",
                        transactionId=tid, egmId=egm.id)
    return None


def _refusal_by_qr_use(
    egm: EgmLike, request: FundingRequest, *, expires_at: datetime | None,
    funded_by: str | None, now: datetime, grace_s: int,
) -> SimError | None:
    """A QR token pays one funding, and only until `grace_s` after Trustly's expiry of it.

    The grace covers a player who scanned just before the expiry and whose bank, and TPAS's
    retries, took a while; a token named long after that is not a payment that just happened.
    """
    tid = request.transaction_id
    if funded_by is not None:
        return SimError("QR_TOKEN_USED", 422,
                        f"QR token {request.qr_token_id} already paid funding {funded_by}; "
                        "a QR token pays one funding", transactionId=tid, egmId=egm.id,
                        fundedBy=funded_by)
    if expires_at is not None and now > expires_at + timedelta(seconds=grace_s):
        return SimError("QR_TOKEN_EXPIRED", 422,
                        f"QR token {request.qr_token_id} expired at "
                        f"{format_instant(expires_at)}, more than {grace_s} s ago",
                        transactionId=tid, egmId=egm.id, expiredAt=format_instant(expires_at))
    return None


def _refusal_by_limits(
    session: Session | None, egm: EgmLike, usage: limits.UsageLike, request: FundingRequest,
    settings: CmsSettings, *, daily_limit: MinorUnits | None = None,
) -> SimError | None:
    """The EGM's credit cap, then the UBAI's daily limit (its usage row is locked).

    `daily_limit` is the limit that applies when the caller already read it; by default it
    is looked up here.
    """
    tid = request.transaction_id
    if egm.credit_meter + request.amount > egm.credit_limit:
        available = max(0, egm.credit_limit - egm.credit_meter)
        return SimError("CREDIT_LIMIT_EXCEEDED", 422,
                        f"EGM {egm.id} can take at most {available} more",
                        transactionId=tid, egmId=egm.id, creditMeter=egm.credit_meter,
                        creditLimit=egm.credit_limit, available=available)
    if daily_limit is None:
        assert session is not None, "looking the limit up needs the unit of work's session"
        daily_limit = limits.effective_limit(session, request.ubai, settings)
    limit = daily_limit
    if usage.used + request.amount > limit:
        remaining = max(0, limit - usage.used)
        return SimError("DAILY_LIMIT_EXCEEDED", 422,
                        f"the daily limit leaves {remaining} for this gaming day",
                        transactionId=tid, remaining=remaining, dailyLimit=limit,
                        gamingDay=usage.gaming_day.isoformat())
    return None


def _store_rejection(
    session: Session, request: FundingRequest, error: SimError | None, day: date,
    now: datetime, *, chain: str,
) -> FundingOutcome:
    """Store a decided rejection under the transactionId and audit it; nothing is applied."""
    assert error is not None
    outcome = FundingOutcome(error.http_status, rejection_body(error), error.code)
    connection = session.connection()
    # A racing twin fails here, on the primary key, before the audit append.
    ledger.insert_funding(connection, request, outcome, day, now)
    audit.append_core(connection, chain=chain, kind="FUNDING_REJECTED",
                      subject=request.transaction_id,
                      now=now, payload={**request.wire(), "code": error.code,
                                        "httpStatus": error.http_status,
                                        "gamingDay": day.isoformat()})
    return outcome


def _apply(
    session: Session, egm: EgmLike, usage: limits.UsageLike, request: FundingRequest, *,
    day: date, now: datetime,
) -> FundingOutcome:
    """Move the money: balanced entries, meter, usage, stored 201 answer, audit record.

    `egm` and `usage` are the rows as locked; they are not changed in place: the meter and
    the usage move by relative UPDATEs in this transaction.
    """
    outcome, legs, payload = _credit(egm, usage, request, day=day, now=now)
    ledger.write_credit(session.connection(), request, outcome, legs=legs, day=day,
                            now=now, audit_payload=payload)
    return outcome


def _credit(
    egm: EgmLike, usage: limits.UsageLike, request: FundingRequest, *, day: date, now: datetime,
) -> tuple[FundingOutcome, tuple[ledger.Leg, ledger.Leg], dict[str, Any]]:
    """What applying writes: the 201 answer, the two legs and the audit payload.

    The sums are amounts again where they are kept (the settlement leg, the meter the answer
    shows); the usage only goes into the audit payload's JSON.
    """
    legs = ((settlement_account_id(request.currency), MinorUnits(-request.amount)),
            (meter_account_id(egm.id), request.amount))
    credit_meter = MinorUnits(egm.credit_meter + request.amount)
    used = usage.used + request.amount
    outcome = FundingOutcome(201, applied_body(request, credit_meter, now))
    payload = {**request.wire(), "creditMeter": credit_meter, "usedToday": used,
               "gamingDay": day.isoformat()}
    return outcome, legs, payload
