"""Payment storage: the state machine's rows and events, written only by compare-and-set.

A payment moves CREATED -> AUTHORIZED -> FUNDING -> CREDITED | REJECTED_VOIDED |
FAILED_VOIDED (CREATED and AUTHORIZED may also end FAILED_VOIDED or REJECTED_VOIDED).
Every change is one `UPDATE ... WHERE id = :id AND status IN (:expected)` plus the events
that explain it, in one transaction. The condition on the status is what makes a live
request, a recovery sweep in another worker and a restarted process safe together: only one
of them can move a payment out of a state, and a terminal state is never left.

`next_attempt_at` is a lease: while it lies in the future, whoever set it is working on the
payment and the recovery sweep leaves it alone; once it passes, the sweep may take over.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.orm import Session

from sim_trustly.models import Payment, PaymentEvent
from simkit.clock import format_instant
from simkit.db import Database

CREATED = "CREATED"
AUTHORIZED = "AUTHORIZED"
FUNDING = "FUNDING"
CREDITED = "CREDITED"
REJECTED_VOIDED = "REJECTED_VOIDED"
FAILED_VOIDED = "FAILED_VOIDED"
OPEN = (CREATED, AUTHORIZED, FUNDING)
TERMINAL = frozenset({CREDITED, REJECTED_VOIDED, FAILED_VOIDED})


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
    amount: int
    currency: str
    reason: str | None = None
    credit_meter: int | None = None

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
    def of(cls, row: Payment) -> PaymentView:
        """The view of a stored payment."""
        return cls(row.id, row.status, row.transaction_id, row.egm_id, row.amount,
                   row.currency, row.reason, row.credit_meter)


def admin_json(row: Payment) -> dict[str, Any]:
    """A payment as the control API lists it: the view plus bookkeeping."""
    return {
        **PaymentView.of(row).to_json(), "merchantId": row.merchant_id, "qrCode": row.qr_code,
        "ubai": row.ubai, "attempts": row.attempts,
        "createdAt": format_instant(row.created_at), "updatedAt": format_instant(row.updated_at),
        "nextAttemptAt": format_instant(row.next_attempt_at) if row.next_attempt_at else None,
    }


def _json_default(value: Any) -> str:
    return format_instant(value) if isinstance(value, datetime) else str(value)


def add_events(session: Session, payment_id: str, now: datetime, events: Iterable[Event]) -> None:
    """Append events to a payment's history (rows are never changed afterwards)."""
    session.add_all([
        PaymentEvent(payment_id=payment_id, at=now, kind=event.kind,
                     detail=json.dumps(event.detail, sort_keys=True, default=_json_default))
        for event in events
    ])


def get(db: Database, payment_id: str) -> Payment | None:
    """The stored payment, or None."""
    with db.read() as session:
        return session.get(Payment, payment_id)


def by_qr_code(session: Session, code: str) -> Payment | None:
    """The payment a QR code paid for (there is at most one: the column is unique)."""
    return session.scalar(select(Payment).where(Payment.qr_code == code))


def advance(
    db: Database, payment_id: str, expected: str | Iterable[str], now: datetime,
    events: Iterable[Event], **changes: Any,
) -> Payment | None:
    """Apply `changes` (a new status among them, usually) if the payment is in `expected`.

    Returns the updated row, or None when another actor moved the payment first; then the
    caller reads the payment again instead of acting on a state it no longer holds.
    """
    states = (expected,) if isinstance(expected, str) else tuple(expected)
    statement = (update(Payment)
                 .where(Payment.id == payment_id, Payment.status.in_(states))
                 .values(updated_at=now, **changes)
                 .execution_options(synchronize_session=False))
    with db.write() as session:
        result = cast(CursorResult[Any], session.execute(statement))
        if result.rowcount != 1:
            return None
        add_events(session, payment_id, now, events)
        return session.get(Payment, payment_id, populate_existing=True)


def take_lease(
    db: Database, payment_id: str, now: datetime, until: datetime, *, steal: bool = False,
) -> Payment | None:
    """Make the caller the one working on an open payment until `until`.

    Refused (None) while another actor's lease runs, unless `steal` (start-up recovery,
    when no other actor can still be alive), and always for a finished payment.
    """
    conditions = [Payment.id == payment_id, Payment.status.in_(OPEN)]
    if not steal:
        conditions.append(or_(Payment.next_attempt_at.is_(None), Payment.next_attempt_at <= now))
    statement = (update(Payment).where(*conditions).values(next_attempt_at=until)
                 .execution_options(synchronize_session=False))
    with db.write() as session:
        result = cast(CursorResult[Any], session.execute(statement))
        if result.rowcount != 1:
            return None
        add_events(session, payment_id, now, [Event("RECOVERY_LEASE", {"until": until})])
        return session.get(Payment, payment_id, populate_existing=True)


def due_for_recovery(
    db: Database, now: datetime, *, include_leased: bool = False, limit: int = 500,
) -> list[str]:
    """Ids of open payments whose lease has run out (or every open one with `include_leased`)."""
    statement = select(Payment.id).where(Payment.status.in_(OPEN))
    if not include_leased:
        statement = statement.where(
            or_(Payment.next_attempt_at.is_(None), Payment.next_attempt_at <= now))
    with db.read() as session:
        return list(session.scalars(statement.order_by(Payment.created_at).limit(limit)))


def count_open(db: Database) -> int:
    """How many payments have no final outcome yet."""
    with db.read() as session:
        return int(session.scalar(
            select(func.count()).select_from(Payment).where(Payment.status.in_(OPEN))) or 0)


def last_send_at(db: Database, payment_id: str) -> datetime | None:
    """When TPAS last sent this payment's funding request (None if it never did)."""
    with db.read() as session:
        return session.scalar(
            select(func.max(PaymentEvent.at))
            .where(PaymentEvent.payment_id == payment_id, PaymentEvent.kind == "FUNDING_SENT"))


def events_json(db: Database, payment_id: str) -> list[dict[str, Any]]:
    """A payment's history, oldest first, for the control API."""
    with db.read() as session:
        rows = session.scalars(select(PaymentEvent).where(PaymentEvent.payment_id == payment_id)
                               .order_by(PaymentEvent.id))
        return [{"at": format_instant(e.at), "kind": e.kind, "detail": json.loads(e.detail)}
                for e in rows]


def list_payments(
    db: Database, *, status: str | None = None, merchant_id: str | None = None,
    since: datetime | None = None, limit: int = 1000,
) -> list[Payment]:
    """Stored payments, oldest first, optionally filtered."""
    statement = select(Payment)
    if status is not None:
        statement = statement.where(Payment.status == status)
    if merchant_id is not None:
        statement = statement.where(Payment.merchant_id == merchant_id)
    if since is not None:
        statement = statement.where(Payment.created_at >= since)
    with db.read() as session:
        return list(session.scalars(statement.order_by(Payment.created_at, Payment.id)
                                    .limit(limit)))
