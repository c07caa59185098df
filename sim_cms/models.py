"""sim_cms's tables: EGMs, the double-entry ledger, fundings, limits, audit, OAuth, QR display.

Ledger rows (transactions and entries), stored funding outcomes and audit records are only
ever inserted, never updated or deleted (a reset of the whole sim aside); for the ledger the
database itself refuses anything else (migration 0003's triggers, see `LedgerWipe`). The EGM's
`credit_meter` and a UBAI's `LimitUsage.used` are running totals kept in the same database
transaction as the entries they summarise, so they can be locked and checked cheaply; the
property tests check that they always equal the sums of the rows behind them.

Every amount column (meter, cap, leg, funding, limit, usage) is a `MinorUnits` to mypy and
a BIGINT to the database: the column type is given explicitly, so the typing changes no
schema and SQLAlchemy hands back the int itself.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Date,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from simkit.models import NAMING
from simkit.money import MinorUnits
from simkit.sqltypes import UtcDateTime


class Base(DeclarativeBase):
    """Declarative base of sim_cms's own tables."""

    metadata = MetaData(naming_convention=NAMING)


class Egm(Base):
    """An electronic gaming machine: its state and its credit meter (minor units)."""

    __tablename__ = "egms"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default="IDLE")
    credit_meter: Mapped[MinorUnits] = mapped_column(BigInteger, default=0)
    credit_limit: Mapped[MinorUnits] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Account(Base):
    """A ledger account: the Trustly settlement account, or one EGM's meter account.

    Append-only like the ledger (migration 0007): a leg's account is checked by a trigger
    when the leg is written, so an account is never changed or deleted, except by a reset of
    the whole sim."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # SETTLEMENT | EGM_METER
    currency: Mapped[str] = mapped_column(String(3))
    egm_id: Mapped[str | None] = mapped_column(ForeignKey("egms.id"), index=True)


class LedgerTransaction(Base):
    """One balanced movement of money; `reference` is unique (a funding's transactionId)."""

    __tablename__ = "ledger_transactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # FUNDING | REVERSAL
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class LedgerEntry(Base):
    """One leg of a transaction: a signed amount on one account; a transaction sums to zero.

    Legs are written no later than their transaction's header, whose insert checks that they
    balance; the key to the header is checked at commit, so a leg may come first.
    """

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("ledger_transactions.id", deferrable=True, initially="DEFERRED"), index=True)
    # Not a foreign key: the ledger's triggers check that the account exists, and accounts
    # are append-only (migration 0007). A foreign key would share-lock the one settlement
    # account row for every funding in flight.
    account_id: Mapped[str] = mapped_column(String(100), index=True)
    amount: Mapped[MinorUnits] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))


class LedgerWipe(Base):
    """A row here lets its own database transaction delete ledger rows: a whole-sim reset.

    The ledger's triggers refuse every UPDATE and DELETE of its rows otherwise. The reset
    inserts the row, empties the tables and deletes it again before it commits, so no other
    transaction ever sees one.
    """

    __tablename__ = "ledger_wipe"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class FundingRecord(Base):
    """The decided outcome of a funding request, stored under its transactionId.

    `fingerprint` is a hash of the request's fields, so a retry with the same body replays
    `response_body` byte for byte and a changed body is recognised as key reuse.
    """

    __tablename__ = "funding_records"

    transaction_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))  # APPLIED | REJECTED
    http_status: Mapped[int] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64))
    response_body: Mapped[str] = mapped_column(Text)
    egm_id: Mapped[str] = mapped_column(String(64), index=True)
    ubai: Mapped[str] = mapped_column(String(128), index=True)
    amount: Mapped[MinorUnits] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    qr_token_id: Mapped[str] = mapped_column(String(128))
    gaming_day: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class DailyLimit(Base):
    """A daily limit set for one UBAI (no row means the configured default applies)."""

    __tablename__ = "daily_limits"

    ubai: Mapped[str] = mapped_column(String(128), primary_key=True)
    daily_limit: Mapped[MinorUnits] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class LimitUsage(Base):
    """How much one UBAI has been funded on one gaming day; the row fundings lock."""

    __tablename__ = "limit_usage"
    __table_args__ = (UniqueConstraint("ubai", "gaming_day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ubai: Mapped[str] = mapped_column(String(128))
    gaming_day: Mapped[date] = mapped_column(Date)
    used: Mapped[MinorUnits] = mapped_column(BigInteger, default=0)


class AuditRecord(Base):
    """One decision in the append-only audit log, chained by hash to the one before it in
    its chain (each EGM's decisions form one chain, the rest of the casino's another).

    `seq` numbers every record in the order the log received it; `chain_seq` numbers the
    records of one chain, and it is what the record's hash covers.
    """

    __tablename__ = "audit_log"
    __table_args__ = (UniqueConstraint("chain", "chain_seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chain: Mapped[str] = mapped_column(String(80))
    chain_seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    kind: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(128), index=True)
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """A chain's head (one row per chain): locked by every append to that chain so it stays
    linear, and naming its last record so a truncated tail shows."""

    __tablename__ = "audit_head"

    chain: Mapped[str] = mapped_column(String(80), primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))


class OAuthClient(Base):
    """A client of the CWS API (TPAS): id and salted hash of its secret."""

    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    salt: Mapped[bytes] = mapped_column(LargeBinary(32))
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AccessToken(Base):
    """An issued Bearer token, stored as a hash, valid until `expires_at` on the clock."""

    __tablename__ = "access_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128))
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    scope: Mapped[str] = mapped_column(String(256), default="")  # granted, space-separated


class OAuthLockout(Base):
    """Failed client authentications at the token endpoint for one client id from one source,
    and the lockout they earned (`source` is the caller's address, or `*` per client id)."""

    __tablename__ = "oauth_lockouts"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime())


class QrDisplay(Base):
    """A QR token the CMS acquired and showed on an EGM (kept after rotation for checks)."""

    __tablename__ = "qr_displays"

    qr_token_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    egm_id: Mapped[str] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(Text)
    token: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    rotates_at: Mapped[datetime] = mapped_column(UtcDateTime())
    displayed_at: Mapped[datetime] = mapped_column(UtcDateTime())


class QrFunding(Base):
    """The one funding a QR token paid for: a second funding naming it fails on the key.

    Rows are only inserted, with the applied funding, in its transaction.
    """

    __tablename__ = "qr_fundings"

    qr_token_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    transaction_id: Mapped[str] = mapped_column(String(128))
    funded_at: Mapped[datetime] = mapped_column(UtcDateTime())


class QrState(Base):
    """Per EGM: the QR on screen now, when to acquire the next, and the last Trustly error."""

    __tablename__ = "qr_state"

    egm_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    current_qr_token_id: Mapped[str | None] = mapped_column(String(128))
    next_acquire_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
