"""The token endpoint's attempt limit: failed client authentications lock a caller out.

The same rules as sim_trustly's Basic-auth lockout (sim_trustly.auth_service.credentials), on
the CMS's own table. Failures are counted per (client id, source address) by default, so a
stranger who guesses TPAS's secret locks out only their own address, never TPAS
(`client_lockout_scope = "client_id"` counts every source together). Each failure is counted by
one upsert whose answer says whether that very attempt was past the threshold, so any number of
concurrent guesses gets exactly `threshold` 401s; a success never resets a window's count. Time
is the injected clock's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, delete, select
from sqlalchemy.orm import Session

from sim_cms.models import OAuthLockout
from sim_cms.settings import CmsSettings
from simkit import lockout_counts
from simkit.clock import utc
from simkit.errors import SimError

ANY_SOURCE = "*"  # the source of every count when lockouts are per client id
UNKNOWN_SOURCE = "unknown"  # a caller whose address the server does not know
_CLIENT_ID_CHARS = OAuthLockout.__table__.c.client_id.type.length  # type: ignore[attr-defined]
_SOURCE_CHARS = OAuthLockout.__table__.c.source.type.length  # type: ignore[attr-defined]


class TooManyAttempts(SimError):
    """429 while a client id is locked out after repeated failed authentications."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            "TOO_MANY_ATTEMPTS", 429,
            f"too many failed client authentications; retry after {retry_after_s} seconds",
            headers={"Retry-After": str(retry_after_s)},
        )


@dataclass(frozen=True)
class LockoutPolicy:
    """How many failures within which window lock a caller out, for how long, and whether
    the caller is a client id from one address ("source") or from anywhere ("client_id")."""

    threshold: int = 5
    window_s: int = 60
    lockout_s: int = 60
    scope: str = "source"

    @classmethod
    def of(cls, settings: CmsSettings) -> LockoutPolicy:
        """The policy the settings configure."""
        return cls(settings.client_lockout_threshold, settings.client_lockout_window_s,
                   settings.client_lockout_s, settings.client_lockout_scope)

    def source_key(self, source: str | None) -> str:
        """The `source` a failure from the address `source` is counted under."""
        if self.scope == "client_id":
            return ANY_SOURCE
        return (source or UNKNOWN_SOURCE)[:_SOURCE_CHARS]


def countable(client_id: str) -> bool:
    """Whether failures of this client id are counted: one that fits the column and holds no
    NUL (which PostgreSQL text cannot store); a longer one is no client's."""
    return len(client_id) <= _CLIENT_ID_CHARS and "\x00" not in client_id


def raise_if_locked(session: Session, client_id: str, source: str, now: datetime) -> None:
    """Raise TooManyAttempts while `client_id` is locked out for `source` (a source key)."""
    if not countable(client_id):
        return
    row = session.get(OAuthLockout, (client_id, source))
    if row is not None and row.locked_until is not None and row.locked_until > now:
        raise TooManyAttempts(_retry_after(row.locked_until, now))


def has_counts(session: Session, client_id: str) -> bool:
    """Whether any failure of `client_id` is on record (from any source)."""
    if not countable(client_id):
        return False
    found = session.execute(select(OAuthLockout.source)
                            .where(OAuthLockout.client_id == client_id).limit(1)).first()
    return found is not None


def record_failure(
    session: Session, client_id: str, source: str, now: datetime, policy: LockoutPolicy
) -> TooManyAttempts | None:
    """Count a failed authentication; the TooManyAttempts to answer when it is past the
    threshold (returned, not raised, so that the count commits).

    One upsert counts and answers, so concurrent failures are numbered 1, 2, 3... with no two
    the same: the first `threshold` of a window are 401s (the last of them locks), every later
    one is a 429. A window that has passed, or a lockout that has ended, starts over.
    """
    if not countable(client_id):
        return None
    failures, locked_until = session.execute(
        _failure_upsert(session, client_id, source, now, policy)).one()
    if failures > policy.threshold and locked_until is not None and utc(locked_until) > now:
        return TooManyAttempts(_retry_after(utc(locked_until), now))
    return None


def forget_ended(session: Session, client_id: str, now: datetime, policy: LockoutPolicy) -> None:
    """After a success, drop `client_id`'s counts whose window and lockout have both ended.

    A live window is kept: a success must not wipe out an attacker's failures.
    """
    session.execute(delete(OAuthLockout).where(
        OAuthLockout.client_id == client_id, _ended(now, policy)))


def _failure_upsert(
    session: Session, client_id: str, source: str, now: datetime, policy: LockoutPolicy
) -> Any:
    return lockout_counts.failure_upsert(
        session, cast(Table, OAuthLockout.__table__), ("client_id", client_id), source, now,
        threshold=policy.threshold, window_s=policy.window_s, lockout_s=policy.lockout_s)


def _ended(now: datetime, policy: LockoutPolicy) -> ColumnElement[bool]:
    return lockout_counts.ended(cast(Table, OAuthLockout.__table__), now, policy.window_s)


_retry_after = lockout_counts.retry_after
