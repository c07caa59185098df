"""Merchant credentials: stored hashed, checked in constant time, guarded by a lockout.

accessKeys are machine-issued secrets, so a salted SHA-256 is the right hash (as for API
tokens): it makes a stolen table useless without slowing every request the way a password
hash would. The comparison is constant time, and an unknown accessId is checked against a
dummy hash so that response time does not reveal which accessIds exist.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BindParameter, Connection, Select, bindparam, delete, select
from sqlalchemy.orm import Session

from sim_trustly.models import AuthLockout, Credential, Merchant, SigningKeyRow
from simkit.clock import utc
from simkit.errors import SimError

_DUMMY_SALT = secrets.token_bytes(16)
_DUMMY_HASH = hashlib.sha256(_DUMMY_SALT + b"not-a-key").digest()


class TooManyAttempts(SimError):
    """Raised while an accessId is locked out after repeated failed authentications."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            "TOO_MANY_ATTEMPTS", 429,
            f"too many failed attempts; retry after {retry_after_s} seconds",
            headers={"Retry-After": str(retry_after_s)},
        )


@dataclass(frozen=True)
class LockoutPolicy:
    """How many failures within which window lock an accessId out, and for how long."""

    threshold: int = 5
    window_s: int = 60
    lockout_s: int = 60


def hash_key(access_key: str, salt: bytes) -> bytes:
    """The stored form of an accessKey."""
    return hashlib.sha256(salt + access_key.encode("utf-8")).digest()


def add_credential(
    session: Session, merchant_id: str, access_id: str, access_key: str, now: datetime
) -> None:
    """Store (or replace) the credential `access_id` for `merchant_id`, hashing the key."""
    salt = secrets.token_bytes(16)
    session.merge(Credential(
        access_id=access_id, merchant_id=merchant_id, salt=salt,
        key_hash=hash_key(access_key, salt), created_at=now,
    ))


@dataclass(frozen=True)
class MerchantView:
    """What issuing a token needs to know about the authenticated merchant."""

    id: str
    token_lifetime_s: int | None
    expires_at_format: str | None


@dataclass(frozen=True)
class CredentialLookup:
    """Everything a successful authentication needs, read in one query."""

    merchant: MerchantView
    salt: bytes
    key_hash: bytes
    locked_until: datetime | None
    has_failures: bool
    active_kid: str | None


def _lookup_statement() -> Select[Any]:
    access_id: BindParameter[str] = bindparam("access_id")
    lockout = select(AuthLockout.locked_until).where(AuthLockout.access_id == access_id)
    failures = select(AuthLockout.failures).where(AuthLockout.access_id == access_id)
    active = select(SigningKeyRow.kid).where(SigningKeyRow.active.is_(True)).limit(1)
    return (
        select(
            Merchant.id, Merchant.token_lifetime_s, Merchant.expires_at_format,
            Credential.salt, Credential.key_hash,
            lockout.scalar_subquery(), failures.scalar_subquery(), active.scalar_subquery(),
        )
        .join(Merchant, Merchant.id == Credential.merchant_id)
        .where(Credential.access_id == access_id)
    )


_LOOKUP = _lookup_statement()  # built once: constructing it cost more than running it


def lookup_credential(connection: Connection, access_id: str) -> CredentialLookup | None:
    """One round trip: credential, merchant, lockout state and the active signing kid.

    None when the accessId is unknown (callers then take the slow, failure path).
    """
    row = connection.execute(_LOOKUP, {"access_id": access_id}).first()
    if row is None:
        return None
    locked_until = None if row[5] is None else utc(row[5])
    return CredentialLookup(
        merchant=MerchantView(row[0], row[1], row[2]), salt=row[3], key_hash=row[4],
        locked_until=locked_until, has_failures=row[6] is not None, active_kid=row[7],
    )


def key_matches(found: CredentialLookup | None, access_key: str) -> bool:
    """Constant-time check of `access_key`; an unknown accessId costs the same."""
    salt, expected = (found.salt, found.key_hash) if found else (_DUMMY_SALT, _DUMMY_HASH)
    matches = hmac.compare_digest(hash_key(access_key, salt), expected)
    return found is not None and matches




def raise_if_locked(session: Session, access_id: str, now: datetime) -> None:
    """Raise TooManyAttempts while `access_id` is locked out."""
    row = session.get(AuthLockout, access_id)
    if row is not None and row.locked_until is not None and row.locked_until > now:
        raise TooManyAttempts(math.ceil((row.locked_until - now).total_seconds()))


def record_failure(
    session: Session, access_id: str, now: datetime, policy: LockoutPolicy
) -> None:
    """Count a failed attempt; lock the accessId once the threshold is reached in the window."""
    row = session.get(AuthLockout, access_id, with_for_update=True)
    if row is None:
        row = AuthLockout(access_id=access_id, failures=0, window_start=now)
        session.add(row)
    if now - row.window_start >= timedelta(seconds=policy.window_s):
        row.failures, row.window_start, row.locked_until = 0, now, None
    row.failures += 1
    if row.failures >= policy.threshold:
        row.locked_until = now + timedelta(seconds=policy.lockout_s)


def clear_failures(session: Session, access_id: str) -> None:
    """Forget earlier failures of `access_id` after it authenticated successfully."""
    session.execute(delete(AuthLockout).where(AuthLockout.access_id == access_id))

