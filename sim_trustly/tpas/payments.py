"""Payment storage: the state machine's rows and events, written only by compare-and-set.

A payment moves CREATED -> AUTHORIZED -> FUNDING -> CREDITED | REJECTED_VOIDED |
FAILED_VOIDED (CREATED and AUTHORIZED may also end FAILED_VOIDED or REJECTED_VOIDED).
Every change is one `UPDATE ... WHERE id = :id AND status IN (:expected)` plus the events
that explain it, in one transaction. The condition on the status is what makes a live
request, a recovery sweep in another worker and a restarted process safe together: only one
of them can move a payment out of a state, and a terminal state is never left.

A payment the bank refused may hand its QR code's claim back (`claim_released_at`, see
`sim_trustly.tpas.state_machine`): it stays FAILED_VOIDED as the record of the refusal, and
the code can be paid again by a new payment. At most one payment per code holds the claim (a
partial unique index), so releasing never makes room for a second credit.

`next_attempt_at` is a lease: while it lies in the future, whoever set it is working on the
payment and the recovery sweep leaves it alone; once it passes, the sweep may take over.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, Update, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from sim_trustly.models import Payment, PaymentEvent
from sim_trustly.tpas import payment_statements
from simkit.clock import format_instant, utc
from simkit.db import Database
from simkit.money import MinorUnits

CREATED = "CREATED"
AUTHORIZED = "AUTHORIZED"
FUNDING = "FUNDING"
CREDITED = "CREDITED"
REJECTED_VOIDED = "REJECTED_VOIDED"
FAILED_VOIDED = "FAILED_VOIDED"
OPEN = (CREATED, AUTHORIZED, FUNDING)
TERMINAL = frozenset({CREDITED, REJECTED_VOIDED, FAILED_VOIDED})

# Core tables: the hot path reads and writes rows as tuples, not as tracked ORM objects.
PAYMENTS = cast(Table, Payment.__table__)
EVENTS = cast(Table, PaymentEvent.__table__)
_ALL = tuple(PAYMENTS.c)
_KEYS = tuple(column.key for column in _ALL)
PAYMENT_COLUMNS = _KEYS  # the payments table's column names, in table order
_INSTANTS = frozenset({"created_at", "updated_at", "next_attempt_at", "claim_released_at"})
_INSERT_EVENTS = insert(EVENTS)
_INSERT_PAYMENT = insert(PAYMENTS)
_SELECT_PAYMENT = select(*_ALL).where(PAYMENTS.c.id == bindparam("payment_id"))


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """A stored payment as read or just written (a plain value: no session behind it)."""

    id: str
    qr_code: str
    merchant_id: str
    egm_id: str
    amount: MinorUnits
    currency: str
    ubai: str | None
    bank_account: str | None
    status: str
    transaction_id: str
    reason: str | None
    credit_meter: MinorUnits | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None
    claim_released_at: datetime | None = None

    @classmethod
    def of(cls, row: Row[Any]) -> PaymentRecord:
        """The record of a row that selected (or returned) every payments column."""
        return cls(**row._mapping)

    @classmethod
    def from_driver(cls, values: Iterable[Any]) -> PaymentRecord:
        """The record of the payments columns' values, in the table's column order, as the
        database driver returns them (plain SQL)."""
        fields: dict[str, Any] = {
            key: driver_instant(value) if key in _INSTANTS and value is not None else value
            for key, value in zip(_KEYS, values, strict=True)}
        return cls(**fields)

    def values(self) -> dict[str, Any]:
        """The column values, for the INSERT that stores a new payment."""
        return {key: getattr(self, key) for key in _KEYS}


def driver_instant(value: Any) -> datetime:
    """An aware UTC instant from a timestamp as the driver returns it for plain SQL.

    PostgreSQL's driver gives aware datetimes; SQLite gives the naive UTC text that the
    `UtcDateTime` column type stored.
    """
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return utc(value)


@dataclass(frozen=True)
class Event:
    """One step to record with a state change: its kind and a JSON-able detail."""

    kind: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class PaymentView:
    """What the player, the microsite and the harness see of a payment."""

    payment_id: str
    status: str
    transaction_id: str
    egm_id: str
    amount: MinorUnits
    currency: str
    reason: str | None = None
    credit_meter: MinorUnits | None = None
    # Not on the wire: the code this payment was made with, and whether its claim was handed
    # back (the bank refused and the code may be paid again); the receipt page offers a retry.
    qr_code: str | None = None
    qr_released: bool = False

    @property
    def definite(self) -> bool:
        """True once the payment has its final outcome."""
        return self.status in TERMINAL

    def to_json(self) -> dict[str, Any]:
        """The wire shape of `POST /api/v1/scan/<code>/payments` and `GET /api/v1/payments/<id>`."""
        body: dict[str, Any] = {
            "paymentId": self.payment_id, "status": self.status,
            "transactionId": self.transaction_id, "egmId": self.egm_id,
            "amount": self.amount, "currency": self.currency,
        }
        if self.reason is not None:
            body["reason"] = self.reason
        if self.credit_meter is not None:
            body["creditMeter"] = self.credit_meter
        return body

    @classmethod
    def of(cls, row: PaymentRecord) -> PaymentView:
        """The view of a stored payment."""
        return cls(row.id, row.status, row.transaction_id, row.egm_id, row.amount,
                   row.currency, row.reason, row.credit_meter, row.qr_code,
                   row.claim_released_at is not None)


def admin_json(row: PaymentRecord) -> dict[str, Any]:
    """A payment as the control API lists it: the view plus bookkeeping."""
    return {
        **PaymentView.of(row).to_json(), "merchantId": row.merchant_id, "qrCode": row.qr_code,
        "ubai": row.ubai, "attempts": row.attempts,
        "createdAt": format_instant(row.created_at), "updatedAt": format_instant(row.updated_at),
        "nextAttemptAt": format_instant(row.next_attempt_at) if row.next_attempt_at else None,
    }


def _json_default(value: Any) -> str:
    return format_instant(value) if isinstance(value, datetime) else str(value)


def _event_pairs(events: Iterable[Event]) -> list[tuple[str, str]]:
    return [(event.kind, json.dumps(event.detail, sort_keys=True, default=_json_default))
            for event in events]


def add_events(
    connection: Connection | Session, payment_id: str, now: datetime, events: Iterable[Event],
) -> None:
    """Append events to a payment's history (rows are never changed afterwards)."""
    rows = [{"payment_id": payment_id, "at": now, "kind": kind, "detail": detail}
            for kind, detail in _event_pairs(events)]
    if len(rows) == 1:  # one row: a plain execute, not the executemany path
        connection.execute(_INSERT_EVENTS, rows[0])
    elif rows:
        connection.execute(_INSERT_EVENTS, rows)


def log_events(db: Database, payment_id: str, now: datetime, events: Iterable[Event]) -> None:
    """Append events to a payment's history in a transaction of their own."""
    with db.core_write() as connection:
        add_events(connection, payment_id, now, events)


def create(connection: Connection, record: PaymentRecord, events: Iterable[Event]) -> None:
    """Store a new payment and its first events, inside the caller's transaction."""
    connection.execute(_INSERT_PAYMENT, record.values())
    add_events(connection, record.id, record.created_at, events)


def claim_and_create(db: Database, code: str, record: PaymentRecord,
                     events: Iterable[Event]) -> bool:
    """PostgreSQL only: claim `code` and store `record` with its events in one statement.

    False, with nothing written, when the code could not be claimed (used, or expired at
    `record.created_at`); the caller explains why (`redemption.claim` on SQLite).
    """
    pairs = _event_pairs(events)
    statement = payment_statements.claimed_and_created(PAYMENTS, len(pairs))
    params = {f"new_{key}": value for key, value in record.values().items()}
    params.update(payment_statements.event_params(pairs), claimed_code=code,
                  now=record.created_at, event_at=record.created_at)
    sql, carried = payment_statements.driver_sql(statement)
    return bool(db.hot_read(sql, {**carried, **params}))


def get(db: Database, payment_id: str) -> PaymentRecord | None:
    """The stored payment, or None."""
    with db.core_read() as connection:
        row = connection.execute(_SELECT_PAYMENT, {"payment_id": payment_id}).first()
    return PaymentRecord.of(row) if row is not None else None


def _in_state(states: str | Iterable[str]) -> ColumnElement[bool]:
    states = (states,) if isinstance(states, str) else tuple(states)
    # `=` and OR compile once; `IN` would expand its parameters again at every execution.
    return or_(*(PAYMENTS.c.status == bindparam(f"state_{i}", state)
                 for i, state in enumerate(states)))


@lru_cache(maxsize=64)
def _cas_statement(
    states: tuple[str, ...], columns: tuple[str, ...], count_attempt: bool, lease_free: bool,
) -> Update:
    """The compare-and-set UPDATE of one shape, built once: only parameter values vary.

    Building and hashing a statement per call cost as much as running it.
    """
    condition = _in_state(states)
    if lease_free:
        condition = condition & or_(PAYMENTS.c.next_attempt_at.is_(None),
                                    PAYMENTS.c.next_attempt_at <= bindparam("lease_now"))
    values: dict[str, Any] = {column: bindparam(f"new_{column}") for column in columns}
    if count_attempt:
        values["attempts"] = PAYMENTS.c.attempts + 1
    return (update(PAYMENTS).where(PAYMENTS.c.id == bindparam("payment_id"), condition)
            .values(values).returning(*_ALL))


def _compare_and_set(
    db: Database, statement: Update, params: dict[str, Any], now: datetime,
    events: Iterable[Event],
) -> PaymentRecord | None:
    """One UPDATE ... RETURNING guarded by its condition, and the events, atomically.

    On PostgreSQL one statement in autocommit on the driver connection (`payment_statements`);
    on SQLite the UPDATE and the event inserts in one write transaction.
    """
    if not db.is_sqlite:
        pairs = _event_pairs(events)
        sql, carried = payment_statements.driver_sql(
            payment_statements.moved_with_events(statement, len(pairs)))
        rows = db.hot_read(sql, {**carried, **params, **payment_statements.event_params(pairs),
                                 "event_at": now})
        return PaymentRecord.from_driver(rows[0]) if rows else None
    with db.core_write() as connection:
        row = connection.execute(statement, params).first()
        if row is None:
            return None
        add_events(connection, params["payment_id"], now, events)
    return PaymentRecord.of(row)


def advance(
    db: Database, payment_id: str, expected: str | Iterable[str], now: datetime,
    events: Iterable[Event], *, count_attempt: bool = False, **changes: Any,
) -> PaymentRecord | None:
    """Apply `changes` (a new status among them, usually) if the payment is in `expected`.

    `count_attempt` adds one to `attempts` (a funding request is about to be sent).
    Returns the updated row, or None when another actor moved the payment first; then the
    caller reads the payment again instead of acting on a state it no longer holds.
    """
    states = (expected,) if isinstance(expected, str) else tuple(expected)
    changes["updated_at"] = now
    columns = tuple(sorted(changes))
    statement = _cas_statement(states, columns, count_attempt, False)
    params = {"payment_id": payment_id, **{f"new_{c}": changes[c] for c in columns}}
    return _compare_and_set(db, statement, params, now, events)


def advance_within(
    connection: Connection, payment_id: str, expected: str | Iterable[str], now: datetime,
    events: Iterable[Event], **changes: Any,
) -> PaymentRecord | None:
    """`advance`, inside the caller's transaction (for a change that must commit together
    with a change to another table, such as releasing a QR code's claim)."""
    states = (expected,) if isinstance(expected, str) else tuple(expected)
    changes["updated_at"] = now
    columns = tuple(sorted(changes))
    statement = _cas_statement(states, columns, False, False)
    params = {"payment_id": payment_id, **{f"new_{c}": changes[c] for c in columns}}
    row = connection.execute(statement, params).first()
    if row is None:
        return None
    add_events(connection, payment_id, now, events)
    return PaymentRecord.of(row)


def take_lease(
    db: Database, payment_id: str, now: datetime, until: datetime, *, steal: bool = False,
) -> PaymentRecord | None:
    """Make the caller the one working on an open payment until `until`.

    Refused (None) while another actor's lease runs, unless `steal` (start-up recovery,
    when no other actor can still be alive), and always for a finished payment.
    """
    statement = _cas_statement(OPEN, ("next_attempt_at",), False, not steal)
    params = {"payment_id": payment_id, "new_next_attempt_at": until, "lease_now": now}
    return _compare_and_set(db, statement, params, now,
                            [Event("RECOVERY_LEASE", {"until": until})])


def due_for_recovery(
    db: Database, now: datetime, *, include_leased: bool = False, limit: int = 500,
) -> list[str]:
    """Ids of open payments whose lease has run out (or every open one with `include_leased`)."""
    statement = select(PAYMENTS.c.id).where(_in_state(OPEN))
    if not include_leased:
        statement = statement.where(
            or_(PAYMENTS.c.next_attempt_at.is_(None), PAYMENTS.c.next_attempt_at <= now))
    with db.core_read() as connection:
        return list(connection.scalars(statement.order_by(PAYMENTS.c.created_at).limit(limit)))


def _due(now: datetime) -> ColumnElement[bool]:
    return _in_state(OPEN) & or_(PAYMENTS.c.next_attempt_at.is_(None),
                                 PAYMENTS.c.next_attempt_at <= now)


def merchants_due(db: Database, now: datetime) -> list[str]:
    """The merchants that have open payments whose lease has run out (the sweep's lanes)."""
    statement = select(PAYMENTS.c.merchant_id).where(_due(now)).distinct()
    with db.core_read() as connection:
        return sorted(connection.scalars(statement))


def due_of_merchants(
    db: Database, now: datetime, merchant_ids: Iterable[str], *, limit: int = 500,
) -> list[str]:
    """Ids of those merchants' open payments whose lease has run out, oldest first.

    Listed per merchant, so however many payments a dead CMS's merchants have left open,
    another merchant's payments are never pushed out of the list by them.
    """
    statement = (select(PAYMENTS.c.id)
                 .where(_due(now), PAYMENTS.c.merchant_id.in_(tuple(merchant_ids)))
                 .order_by(PAYMENTS.c.created_at).limit(limit))
    with db.core_read() as connection:
        return list(connection.scalars(statement))


def release_leases(db: Database, now: datetime) -> int:
    """End now the lease of every open payment, and say so in each one's history.

    Only for the start-up of a process that alone uses the database (every lease is a dead
    process's): the recovery sweep then takes those payments over at its first tick instead
    of waiting for the leases to run out. Nothing is sent to any CMS here.
    """
    statement = (update(PAYMENTS)
                 .where(_in_state(OPEN), PAYMENTS.c.next_attempt_at > bindparam("lease_now"))
                 .values(next_attempt_at=bindparam("lease_now"), updated_at=bindparam("lease_now"))
                 .returning(PAYMENTS.c.id))
    with db.core_write() as connection:
        released = list(connection.scalars(statement, {"lease_now": now}))
        for payment_id in released:
            add_events(connection, payment_id, now, [Event("LEASE_RELEASED", {"at": now})])
    return len(released)


def count_open(db: Database) -> int:
    """How many payments have no final outcome yet."""
    with db.core_read() as connection:
        return int(connection.scalar(
            select(func.count()).select_from(PAYMENTS).where(_in_state(OPEN))) or 0)


def last_send_at(db: Database, payment_id: str) -> datetime | None:
    """When TPAS last sent this payment's funding request (None if it never did)."""
    with db.core_read() as connection:
        last: datetime | None = connection.scalar(
            select(func.max(EVENTS.c.at))
            .where(EVENTS.c.payment_id == payment_id, EVENTS.c.kind == "FUNDING_SENT"))
    return last


def events_json(db: Database, payment_id: str) -> list[dict[str, Any]]:
    """A payment's history, oldest first, for the control API."""
    statement = (select(EVENTS.c.at, EVENTS.c.kind, EVENTS.c.detail)
                 .where(EVENTS.c.payment_id == payment_id).order_by(EVENTS.c.id))
    with db.core_read() as connection:
        rows = connection.execute(statement).all()
    return [{"at": format_instant(at), "kind": kind, "detail": json.loads(detail)}
            for at, kind, detail in rows]


def list_payments(
    db: Database, *, status: str | None = None, merchant_id: str | None = None,
    since: datetime | None = None, limit: int = 1000,
) -> list[PaymentRecord]:
    """Stored payments, oldest first, optionally filtered."""
    statement = select(*_ALL)
    if status is not None:
        statement = statement.where(PAYMENTS.c.status == status)
    if merchant_id is not None:
        statement = statement.where(PAYMENTS.c.merchant_id == merchant_id)
    if since is not None:
        statement = statement.where(PAYMENTS.c.created_at >= since)
    with db.core_read() as connection:
        rows = connection.execute(
            statement.order_by(PAYMENTS.c.created_at, PAYMENTS.c.id).limit(limit)).all()
    return [PaymentRecord.of(row) for row in rows]
