"""Merchant credentials: stored hashed, checked in constant time, guarded by a lockout.

accessKeys are machine-issued secrets, so a salted SHA-256 is the right hash (as for API
tokens): it makes a stolen table useless without slowing every request the way a password
hash would. The comparison is constant time, and an unknown accessId is checked against a
dummy hash so that response time does not reveal which accessIds exist.

The lockout counts failures per (accessId, source address) by default, so a stranger who
knows a casino's accessId locks out only their own address, never the casino's QR rotation
(`LockoutPolicy.scope`; "access_id" counts all sources together). Each failure is counted by
one upsert whose answer says whether that very attempt was past the threshold, so any number
of concurrent guesses gets exactly `threshold` 401s; a success never resets the count.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Select,
    Table,
    bindparam,
    delete,
    func,
    select,
)
from sqlalchemy.orm import Session

from sim_trustly.models import AuthLockout, Credential, Merchant, SigningKeyRow
from sim_trustly.settings import LockoutScope
from simkit import lockout_counts
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


ANY_SOURCE = "*"  # the source of every count when lockouts are per accessId
UNKNOWN_SOURCE = "unknown"  # a caller whose address the server does not know
MAX_SOURCE_CHARS = 64


@dataclass(frozen=True)
class LockoutPolicy:
    """How many failures within which window lock a caller out, for how long, and who the
    caller is: the accessId from one source address ("source") or from anywhere."""

    threshold: int = 5
    window_s: int = 60
    lockout_s: int = 60
    scope: LockoutScope = "source"

    def source_key(self, source: str | None) -> str:
        """The `source` a failure from `source` is counted under."""
        if self.scope == "access_id":
            return ANY_SOURCE
        return (source or UNKNOWN_SOURCE)[:MAX_SOURCE_CHARS]


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
    # Lockout state over every source: the fast path only needs to know whether there is
    # any (then the full check, per source, runs in the view).
    access_id: BindParameter[str] = bindparam("access_id")
    of_id = AuthLockout.access_id == access_id
    lockout = select(func.max(AuthLockout.locked_until)).where(of_id)
    failures = select(AuthLockout.failures).where(of_id).limit(1)
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

    `locked_until` and `has_failures` are about the accessId from any source.

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


def raise_if_locked(session: Session, access_id: str, source: str, now: datetime) -> None:
    """Raise TooManyAttempts while `access_id` is locked out for `source` (a source key)."""
    row = session.get(AuthLockout, (access_id, source))
    if row is not None and row.locked_until is not None and row.locked_until > now:
        raise TooManyAttempts(_retry_after(row.locked_until, now))


def record_failure(
    session: Session, access_id: str, source: str, now: datetime, policy: LockoutPolicy
) -> TooManyAttempts | None:
    """Count a failed attempt; the TooManyAttempts to answer when it is past the threshold
    (returned, not raised, so that the count commits).

    One upsert counts and answers, so concurrent failures are numbered 1, 2, 3... with no
    two the same: the first `threshold` of a window are 401s (the last of them locks), every
    later one is a 429. A window that has passed, or a lockout that has ended, starts over.
    """
    if not _countable(access_id):
        return None  # no credential has such an id: nothing to protect, nothing to store
    failures, locked_until = session.execute(
        _failure_upsert(session, access_id, source[:_SOURCE_CHARS], now, policy)
    ).one()
    if failures > policy.threshold and locked_until is not None and utc(locked_until) > now:
        return TooManyAttempts(_retry_after(utc(locked_until), now))
    return None


_ACCESS_ID_CHARS = AuthLockout.__table__.c.access_id.type.length  # type: ignore[attr-defined]
_SOURCE_CHARS = AuthLockout.__table__.c.source.type.length  # type: ignore[attr-defined]


def _countable(access_id: str) -> bool:
    """Whether failures of this accessId are counted: one that fits the column and holds no
    NUL (which PostgreSQL text cannot store); a longer one is no credential's."""
    return len(access_id) <= _ACCESS_ID_CHARS and "\x00" not in access_id


def _failure_upsert(
    session: Session, access_id: str, source: str, now: datetime, policy: LockoutPolicy
) -> Any:
    return lockout_counts.failure_upsert(
        session, cast(Table, AuthLockout.__table__), ("access_id", access_id), source, now,
        threshold=policy.threshold, window_s=policy.window_s, lockout_s=policy.lockout_s)


def forget_stale_failures(
    session: Session, access_id: str, now: datetime, policy: LockoutPolicy
) -> None:
    """After a success, drop `access_id`'s counts whose window and lockout have both ended.

    A live window is kept (a success must not wipe out an attacker's failures); dropping the
    ended ones lets the token fast path serve the accessId again.
    """
    session.execute(delete(AuthLockout).where(
        AuthLockout.access_id == access_id, _ended(now, policy)
    ))


def _ended(now: datetime, policy: LockoutPolicy) -> ColumnElement[bool]:
    return lockout_counts.ended(cast(Table, AuthLockout.__table__), now, policy.window_s)


_retry_after = lockout_counts.retry_after
