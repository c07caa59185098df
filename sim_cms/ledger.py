"""The double-entry ledger's writer and its invariant checks: the only code that writes
ledger rows, funding records and the running totals (the EGM's credit meter, a UBAI's daily
usage), and the reader of funding records for the control API (`list_fundings`). What to
write is decided by `sim_cms.funding.decide`. Amounts are `MinorUnits` throughout: a leg is
`(account id, signed amount)`.

Rows are only inserted; the two running totals are the only values ever updated (by relative
UPDATEs under their locks), and the invariant checks at the end of this module
(`ledger_sums_to_zero`, `meter_matches_entries`) check that they equal the sums of the
entries behind them.

A funding is the hottest write of the CMS, so its statements skip the ORM's unit of work
(identity map, flush ordering, per-object bookkeeping) and are compiled once at import;
SQLAlchemy's statement cache then reuses their compiled form for every request. The ORM
models stay the schema's single source: every statement is built from their tables.

What the unit of work sends on the happy path (see `sim_cms.funding.decide` for the order and
the locks): one SELECT that locks the EGM row and reads everything the decision needs with
it, the usage row's lock, then the writes, and the audit append (`audit.append_core`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    BigInteger,
    Connection,
    Date,
    Row,
    Table,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from sim_cms import audit
from sim_cms.models import (
    DailyLimit,
    Egm,
    FundingRecord,
    LedgerEntry,
    LedgerTransaction,
    LimitUsage,
    QrDisplay,
    QrFunding,
)
from sim_cms.seed import meter_account_id
from simkit.money import MinorUnits
from simkit.sqltypes import UtcDateTime

if TYPE_CHECKING:  # `funding.requests` imports `limits`, which locks usage through here
    from sim_cms.funding.requests import FundingOutcome, FundingRequest

AnyRow = Row[*tuple[Any, ...]]
Leg = tuple[str, MinorUnits]
"""One leg of a ledger transaction: an account id and the signed amount it moves."""
_EGMS = cast(Table, Egm.__table__)
_FUNDINGS = cast(Table, FundingRecord.__table__)
_USAGE = cast(Table, LimitUsage.__table__)
_TRANSACTIONS = cast(Table, LedgerTransaction.__table__)

# The EGM row, locked, with the stored outcome of this transactionId (if any), the EGM the
# QR token was displayed on (if any) and the UBAI's own daily limit (if one is set). On
# SQLite FOR UPDATE is not rendered: the writer's BEGIN IMMEDIATE already serialises.
_LOCK_FOR_FUNDING = (
    select(
        _EGMS.c.id, _EGMS.c.state, _EGMS.c.credit_meter, _EGMS.c.credit_limit,
        _EGMS.c.currency, _FUNDINGS.c.transaction_id, _FUNDINGS.c.fingerprint,
        _FUNDINGS.c.http_status, _FUNDINGS.c.response_body, _FUNDINGS.c.error_code,
        select(QrDisplay.egm_id).where(QrDisplay.qr_token_id == bindparam("qr"))
        .scalar_subquery().label("qr_egm_id"),
        select(QrDisplay.expires_at).where(QrDisplay.qr_token_id == bindparam("qr"))
        .scalar_subquery().label("qr_expires_at"),
        select(QrFunding.transaction_id).where(QrFunding.qr_token_id == bindparam("qr"))
        .scalar_subquery().label("qr_funded_by"),
        select(DailyLimit.daily_limit).where(DailyLimit.ubai == bindparam("ubai"))
        .scalar_subquery().label("daily_limit"),
    )
    .select_from(_EGMS.outerjoin(_FUNDINGS, _FUNDINGS.c.transaction_id == bindparam("tid")))
    .where(_EGMS.c.id == bindparam("egm"))
    .with_for_update(of=_EGMS)
)
_FIND_FUNDING = select(
    _FUNDINGS.c.transaction_id, _FUNDINGS.c.fingerprint, _FUNDINGS.c.http_status,
    _FUNDINGS.c.response_body, _FUNDINGS.c.error_code,
).where(_FUNDINGS.c.transaction_id == bindparam("tid"))
_LOCK_USAGE = (
    select(_USAGE.c.ubai, _USAGE.c.gaming_day, _USAGE.c.used)
    .where(_USAGE.c.ubai == bindparam("ubai"), _USAGE.c.gaming_day == bindparam("day"))
    .with_for_update()
)
_INSERT_TRANSACTION = insert(_TRANSACTIONS)
# The id a new ledger transaction gets, taken before its legs are written (they come first).
# SQLite: the writer's BEGIN IMMEDIATE serialises, and max + 1 is what SQLite itself picks.
_NEXT_TRANSACTION_ID = {
    "sqlite": select(func.coalesce(func.max(_TRANSACTIONS.c.id), 0) + 1),
    "postgresql": select(func.nextval(func.pg_get_serial_sequence("ledger_transactions", "id"))),
}
_INSERT_ENTRIES = insert(cast(Table, LedgerEntry.__table__))
_ADD_TO_METER = (
    update(_EGMS).where(_EGMS.c.id == bindparam("egm"))
    .values(credit_meter=_EGMS.c.credit_meter + bindparam("add"))
)
_ADD_TO_USAGE = (
    update(_USAGE)
    .where(_USAGE.c.ubai == bindparam("for_ubai"), _USAGE.c.gaming_day == bindparam("day"))
    .values(used=_USAGE.c.used + bindparam("add"))
)
_INSERT_FUNDING = insert(_FUNDINGS)
_INSERT_QR_FUNDING = insert(cast(Table, QrFunding.__table__))


def check_balanced(reference: str, legs: Sequence[Leg]) -> None:
    """Refuse (as a bug) legs that do not sum to zero, before anything is written."""
    if sum(amount for _, amount in legs) != 0:
        raise ValueError(f"ledger transaction {reference} does not balance: {legs}")


def lock_for_funding(connection: Connection, request: FundingRequest) -> AnyRow | None:
    """The EGM row locked for this transaction, with what the decision reads beside it.

    None when the EGM does not exist. Columns: the EGM's `id`, `state`, `credit_meter`,
    `credit_limit`, `currency`; the stored outcome's `transaction_id` (None when the id was
    never decided), `fingerprint`, `http_status`, `response_body`, `error_code`; `qr_egm_id`
    (the EGM the QR token was shown on), `qr_expires_at` (Trustly's expiry of the token),
    `qr_funded_by` (the transactionId the token already paid, if any) and `daily_limit`
    (None: the default applies).
    """
    return connection.execute(_LOCK_FOR_FUNDING, {
        "egm": request.egm_id, "tid": request.transaction_id, "qr": request.qr_token_id,
        "ubai": request.ubai,
    }).first()


def find_funding(connection: Connection, transaction_id: str) -> AnyRow | None:
    """The stored outcome of `transaction_id` (the columns `lock_for_funding` names)."""
    return connection.execute(_FIND_FUNDING, {"tid": transaction_id}).first()


def lock_usage(connection: Connection, ubai: str, day: date) -> AnyRow | None:
    """The usage row (`ubai`, `gaming_day`, `used`) locked FOR UPDATE, or None if missing."""
    return connection.execute(_LOCK_USAGE, {"ubai": ubai, "day": day}).first()


def insert_transaction(connection: Connection, reference: str, kind: str, *, currency: str,
                       now: datetime, legs: Sequence[Leg]) -> int:
    """One ledger transaction and its legs; the unique reference fails for a racing twin.

    The legs are written first, in one statement, and the header last: the database's guards
    (migration 0003) check on SQLite, as the header goes in, that the legs before it balance,
    and on PostgreSQL that the legs of each statement do.
    """
    check_balanced(reference, legs)
    transaction_id: int = connection.execute(
        _NEXT_TRANSACTION_ID[connection.dialect.name]).scalar_one()
    connection.execute(_INSERT_ENTRIES.values([  # one statement: PostgreSQL checks each
        {"transaction_id": transaction_id, "account_id": account, "amount": amount,
         "currency": currency} for account, amount in legs]))  # statement's legs balance
    connection.execute(_INSERT_TRANSACTION, {
        "id": transaction_id, "reference": reference, "kind": kind, "created_at": now})
    return transaction_id


def add_credit(connection: Connection, request: FundingRequest, day: date) -> None:
    """Move the EGM's meter and the UBAI's usage by the amount (relative, under the locks)."""
    connection.execute(_ADD_TO_METER, {"egm": request.egm_id, "add": request.amount})
    connection.execute(_ADD_TO_USAGE, {"for_ubai": request.ubai, "day": day,
                                       "add": request.amount})


def insert_funding(connection: Connection, request: FundingRequest, outcome: FundingOutcome,
                   day: date, now: datetime) -> None:
    """Store the decided outcome under the transactionId (its primary key)."""
    connection.execute(_INSERT_FUNDING, {
        "transaction_id": request.transaction_id, "fingerprint": request.fingerprint(),
        "outcome": "REJECTED" if outcome.code else "APPLIED",
        "http_status": outcome.http_status, "error_code": outcome.code,
        "response_body": outcome.body, "egm_id": request.egm_id, "ubai": request.ubai,
        "amount": request.amount, "currency": request.currency,
        "qr_token_id": request.qr_token_id, "gaming_day": day, "created_at": now,
    })


# PostgreSQL: the whole credit in one statement (one round trip instead of seven), the audit
# append last: its head lock waits until the funding record is in (a racing twin of the
# transactionId has failed on a unique key by then), and is held from here to the commit.
_PG_LEDGER_ROWS = """
    WITH tx AS (
        INSERT INTO ledger_transactions (reference, kind, created_at)
        VALUES (:tid, 'FUNDING', :now) RETURNING id
    ), legs AS (
        INSERT INTO ledger_entries (transaction_id, account_id, amount, currency)
        SELECT tx.id, leg.account_id, leg.amount, :currency
        FROM tx, (VALUES (CAST(:from_account AS VARCHAR), CAST(:minus AS BIGINT)),
                         (CAST(:to_account AS VARCHAR), CAST(:plus AS BIGINT)))
             AS leg (account_id, amount)
    ),"""
_PG_TOTALS = """
    meter AS (
        UPDATE egms SET credit_meter = credit_meter + CAST(:plus AS BIGINT) WHERE id = :egm
    ), usage AS (
        UPDATE limit_usage SET used = used + CAST(:plus AS BIGINT)
        WHERE ubai = :ubai AND gaming_day = :day
    ),"""
_PG_OUTCOME = """
    outcome AS (
        INSERT INTO funding_records (transaction_id, fingerprint, outcome, http_status,
            error_code, response_body, egm_id, ubai, amount, currency, qr_token_id,
            gaming_day, created_at)
        VALUES (:tid, :fingerprint, 'APPLIED', :status, NULL, :body, :egm, :ubai,
            CAST(:plus AS BIGINT), :currency, :qr, :day, :now)
        RETURNING transaction_id
    ), claim AS (
        INSERT INTO qr_fundings (qr_token_id, transaction_id, funded_at)
        VALUES (:qr, :tid, :now)
    ),"""
_PG_CREDIT_WRITES = _PG_LEDGER_ROWS + _PG_TOTALS + _PG_OUTCOME
_PG_CREDIT = text(_PG_CREDIT_WRITES + audit.pg_chain_sql(after="outcome")).bindparams(
    bindparam("now", type_=UtcDateTime()), bindparam("day", type_=Date()),
    bindparam("minus", type_=BigInteger()), bindparam("plus", type_=BigInteger()),
    *audit.PG_CHAIN_TYPES)


def pg_credit_values(request: FundingRequest, outcome: FundingOutcome, *,
                      legs: tuple[Leg, Leg], day: date, now: datetime,
                      audit_payload: dict[str, Any]) -> dict[str, Any]:
    """The bound values of `_PG_CREDIT` (and of `PG_HOT_CREDIT`, the same statement)."""
    check_balanced(request.transaction_id, legs)
    (from_account, minus), (to_account, plus) = legs
    assert plus == request.amount, "the second leg credits the EGM's meter"
    return {
        "tid": request.transaction_id, "now": now, "currency": request.currency,
        "from_account": from_account, "minus": minus, "to_account": to_account, "plus": plus,
        "egm": request.egm_id, "ubai": request.ubai, "day": day,
        "fingerprint": request.fingerprint(), "status": outcome.http_status,
        "body": outcome.body, "qr": request.qr_token_id,
        **audit.pg_chain_params(chain=audit.egm_chain(request.egm_id), kind="FUNDING_APPLIED",
                                subject=request.transaction_id, payload=audit_payload,
                                now=now),
    }


# The hot path (PostgreSQL, `Database.hot_transaction`): a whole applied funding in two round
# trips, on the assumption that it will be applied (a rejection rolls back, and the general
# path decides it). The first statement moves the EGM's meter (which locks its row), then
# creates-or-moves the UBAI's usage row for the gaming day (it reads the EGM CTE, so the locks
# come in the general path's order: EGM row, usage row), and returns the values from *before*
# the move with what the decision reads beside them: the stored outcome of the transactionId,
# the EGM the QR token was displayed on and its expiry, the funding it already paid (if any),
# the UBAI's own daily limit, and whether the EGM's audit chain has its head (the EGM's first
# audited decision makes it, on the general path). No row: the EGM does not exist. The second
# statement writes the ledger rows, the stored answer, the QR token's claim and the audit
# record, and is committed in the same round trip.
PG_HOT_MOVE_TOTALS = """
    WITH egm AS (
        UPDATE egms SET credit_meter = credit_meter + CAST(:plus AS BIGINT) WHERE id = :egm
        RETURNING id, state, credit_meter - CAST(:plus AS BIGINT) AS credit_meter,
                  credit_limit, currency
    ), usage AS (
        INSERT INTO limit_usage (ubai, gaming_day, used)
        SELECT :ubai, :day, CAST(:plus AS BIGINT) FROM egm
        ON CONFLICT (ubai, gaming_day) DO UPDATE SET used = limit_usage.used + EXCLUDED.used
        RETURNING gaming_day, used - CAST(:plus AS BIGINT) AS used
    )
    SELECT egm.id, egm.state, egm.credit_meter, egm.credit_limit, egm.currency,
           f.transaction_id, q.egm_id AS qr_egm_id, q.expires_at AS qr_expires_at,
           (SELECT c.transaction_id FROM qr_fundings c WHERE c.qr_token_id = :qr)
               AS qr_funded_by,
           (SELECT d.daily_limit FROM daily_limits d WHERE d.ubai = :ubai) AS daily_limit,
           usage.gaming_day, usage.used,
           EXISTS (SELECT 1 FROM audit_head h WHERE h.chain = :chain) AS audit_head
    FROM egm CROSS JOIN usage
    LEFT JOIN funding_records f ON f.transaction_id = :tid
    LEFT JOIN qr_displays q ON q.qr_token_id = :qr
"""
PG_HOT_CREDIT = _PG_LEDGER_ROWS + _PG_OUTCOME + audit.pg_chain_sql(after="outcome")


def write_credit(connection: Connection, request: FundingRequest, outcome: FundingOutcome, *,
                 legs: tuple[Leg, Leg], day: date, now: datetime,
                 audit_payload: dict[str, Any]) -> None:
    """Write an applied funding: its ledger transaction with two legs (settlement, then the
    EGM's meter), the meter and the usage moved by the amount, the stored answer, and the
    FUNDING_APPLIED audit record with `audit_payload`.
    """
    check_balanced(request.transaction_id, legs)
    if connection.dialect.name != "postgresql":
        insert_transaction(connection, request.transaction_id, "FUNDING",
                           currency=request.currency, now=now, legs=legs)
        add_credit(connection, request, day)
        insert_funding(connection, request, outcome, day, now)
        connection.execute(_INSERT_QR_FUNDING, {
            "qr_token_id": request.qr_token_id, "transaction_id": request.transaction_id,
            "funded_at": now})
        audit.append_core(connection, chain=audit.egm_chain(request.egm_id),
                          kind="FUNDING_APPLIED", subject=request.transaction_id,
                          payload=audit_payload, now=now)
        return
    values = pg_credit_values(request, outcome, legs=legs, day=day, now=now,
                               audit_payload=audit_payload)
    if connection.execute(_PG_CREDIT, values).first() is None:  # the EGM's first record
        audit.append_core(connection, chain=audit.egm_chain(request.egm_id),
                          kind="FUNDING_APPLIED", subject=request.transaction_id,
                          payload=audit_payload, now=now)  # makes the head, then appends


def get_funding(session: Session, transaction_id: str) -> FundingRecord | None:
    """The decided outcome stored under `transaction_id`, or None if it was never decided."""
    return session.get(FundingRecord, transaction_id, populate_existing=True)


def list_fundings(session: Session, since: datetime | None = None) -> list[FundingRecord]:
    """Every decided funding, oldest first, optionally only those decided from `since` on
    (what reconciliation compares with Trustly's payments)."""
    statement = select(FundingRecord).order_by(FundingRecord.created_at)
    if since is not None:
        statement = statement.where(FundingRecord.created_at >= since)
    return list(session.scalars(statement))


def ledger_sums_to_zero(session: Session) -> bool:
    """Whether every transaction's entries, and hence all entries together, sum to zero."""
    unbalanced = session.execute(
        select(LedgerEntry.transaction_id).group_by(LedgerEntry.transaction_id)
        .having(func.sum(LedgerEntry.amount) != 0).limit(1)
    ).first()
    total = session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0)))
    return unbalanced is None and int(total or 0) == 0


def account_balance(session: Session, account_id: str) -> MinorUnits:
    """The sum of an account's entries (an EGM meter account's equals its credit meter)."""
    total = session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0))
                           .where(LedgerEntry.account_id == account_id))
    return MinorUnits(int(total or 0))  # PostgreSQL's SUM of a BIGINT is a NUMERIC


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
        "appliedTotal": MinorUnits(int(applied or 0)),
        "balanced": ledger_sums_to_zero(session),
    }
