"""The demo casino: EGMs, ledger accounts, OAuth clients and the audit chain's head."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from sim_cms import models
from sim_cms.settings import CmsSettings, EgmConfig

GENESIS_HASH = "0" * 64


def settlement_account_id(currency: str) -> str:
    """The id of the account Trustly's settlement funds come from."""
    return f"settlement:trustly:{currency}"


def meter_account_id(egm_id: str) -> str:
    """The id of an EGM's credit-meter account."""
    return f"egm:{egm_id}"


def hash_secret(secret: str, salt: bytes) -> bytes:
    """Stored form of a client secret (machine-issued, so a salted SHA-256 suffices)."""
    return hashlib.sha256(salt + secret.encode("utf-8")).digest()


def add_egm(session: Session, egm: EgmConfig, currency: str, now: datetime) -> None:
    """Create an EGM (IDLE, meter 0) and its meter account, if it does not exist yet."""
    if session.get(models.Egm, egm.id) is not None:
        return
    session.add(models.Egm(id=egm.id, name=egm.name, state="IDLE", credit_meter=0,
                           credit_limit=egm.credit_limit, currency=currency, updated_at=now))
    session.flush()
    session.add(models.Account(id=meter_account_id(egm.id), kind="EGM_METER",
                               currency=currency, egm_id=egm.id))


def seed(session: Session, settings: CmsSettings, now: datetime) -> None:
    """Make sure the configured casino exists (idempotent: runs at every start)."""
    settlement = settlement_account_id(settings.currency)
    if session.get(models.Account, settlement) is None:
        session.add(models.Account(id=settlement, kind="SETTLEMENT", currency=settings.currency))
    for egm in settings.egms:
        add_egm(session, egm, settings.currency, now)
    for client in settings.clients:
        salt = secrets.token_bytes(16)
        session.merge(models.OAuthClient(client_id=client.client_id, salt=salt,
                                         secret_hash=hash_secret(client.client_secret, salt)))


RESET_ORDER = (
    models.LedgerEntry, models.LedgerTransaction, models.FundingRecord, models.LimitUsage,
    models.DailyLimit, models.AuditRecord, models.AuditHead, models.AccessToken,
    models.OAuthLockout,
    models.QrFunding, models.QrDisplay, models.QrState, models.Account, models.Egm,
    models.OAuthClient,
)


def reset(session: Session, settings: CmsSettings, now: datetime) -> None:
    """Empty every table and seed the demo casino again.

    The ledger's guards refuse deleting its rows unless this transaction holds a
    `LedgerWipe` row; it is deleted again before the commit.
    """
    session.execute(insert(models.LedgerWipe).values(id=1))
    for table in (*RESET_ORDER, models.LedgerWipe):
        session.execute(delete(table))
    session.flush()
    seed(session, settings, now)
