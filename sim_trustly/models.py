"""sim_trustly's tables: merchants, their credentials, signing keys, QR tokens, lockouts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from simkit.models import NAMING
from simkit.money import MinorUnits
from simkit.sqltypes import UtcDateTime


class Base(DeclarativeBase):
    """Declarative base of sim_trustly's own tables."""

    metadata = MetaData(naming_convention=NAMING)


class Merchant(Base):
    """A merchant (a casino operator) that may ask for QR tokens."""

    __tablename__ = "merchants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_lifetime_s: Mapped[int | None] = mapped_column(Integer)
    expires_at_format: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Credential(Base):
    """An accessId and the salted hash of its accessKey; the key itself is never stored."""

    __tablename__ = "credentials"

    access_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"))
    salt: Mapped[bytes] = mapped_column(LargeBinary(32))
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class SigningKeyRow(Base):
    """A JWT signing key; exactly one is active for signing, the others only verify."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(8))
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    active: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class QrTokenRow(Base):
    """An issued QR token, found by the short code in its URL (the JWT's `jti`)."""

    __tablename__ = "qr_tokens"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(64), index=True)
    egm_id: Mapped[str] = mapped_column(String(64))
    location_id: Mapped[str | None] = mapped_column(String(64))
    kid: Mapped[str] = mapped_column(String(64))
    token: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class AuthLockout(Base):
    """Failed authentication attempts for one accessId from one source, and the lockout they
    earned (`source` is the caller's address, or `*` when lockouts are per accessId)."""

    __tablename__ = "auth_lockouts"

    access_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Payment(Base):
    """A player's payment through TPAS: its state, the funding call's id, and its outcome.

    `transaction_id` is chosen and stored before the first Funding call, so every retry and
    every recovery after a crash uses the same id and the CMS can credit at most once.

    A QR code has at most one payment holding its claim: `claim_released_at` is set only on
    a payment the bank refused (nothing reached the CMS) whose claim was handed back so the
    player can pay with the same code again. The partial unique index enforces it.
    """

    __tablename__ = "payments"
    __table_args__ = (
        Index("uq_payments_live_qr_code", "qr_code", unique=True,
              sqlite_where=text("claim_released_at IS NULL"),
              postgresql_where=text("claim_released_at IS NULL")),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    qr_code: Mapped[str] = mapped_column(ForeignKey("qr_tokens.code"))
    merchant_id: Mapped[str] = mapped_column(String(64), index=True)
    egm_id: Mapped[str] = mapped_column(String(64), index=True)
    amount: Mapped[MinorUnits] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    ubai: Mapped[str | None] = mapped_column(String(128))
    bank_account: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(24), index=True)
    transaction_id: Mapped[str] = mapped_column(String(128), unique=True)
    reason: Mapped[str | None] = mapped_column(String(64))
    credit_meter: Mapped[MinorUnits | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    claim_released_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class PaymentEvent(Base):
    """One step of a payment's life (state change, CMS call and its answer), append-only."""

    __tablename__ = "payment_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")
