"""Signing keys in the database: one active key signs, every kept key verifies.

Keys live in the database so that every worker signs with the same key and a rotation made
through the control API is seen by all of them. A rotated-out key is kept until the last
token it signed has expired (plus leeway), so rotation never breaks a QR on an EGM screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal, cast

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from sim_trustly.auth_service.tokens import Keyring, SigningKey
from sim_trustly.models import SigningKeyRow
from sim_trustly.settings import SigningKeyConfig
from simkit.db import Database
from simkit.errors import SimError

Alg = Literal["HS256", "ES256"]


class SigningKeyError(SimError):
    """Raised when a key operation of the control API cannot be done (unknown or active kid)."""


def to_signing_key(row: SigningKeyRow) -> SigningKey:
    """The token module's key for a stored row."""
    return SigningKey(kid=row.kid, alg=cast(Alg, row.alg), secret=row.secret)


def validate_configured(keys: Sequence[SigningKeyConfig]) -> list[SigningKey]:
    """Build the configured keys, failing start-up early on a weak or malformed one."""
    return [SigningKey(kid=k.kid, alg=k.alg, secret=k.secret) for k in keys]


def ensure_signing_keys(
    session: Session, configured: Sequence[SigningKey], alg: Alg, now: datetime
) -> None:
    """Store configured keys (the last one becomes active), or make one if there is none."""
    for key in configured:
        session.merge(SigningKeyRow(
            kid=key.kid, alg=key.alg, secret=key.secret, active=False, created_at=now,
        ))
    if configured:
        _activate(session, configured[-1].kid, now)
    elif session.execute(select(SigningKeyRow.kid).limit(1)).first() is None:
        generated = SigningKey.generate(kid=f"k-{now:%Y%m%d%H%M%S}", alg=alg)
        session.add(SigningKeyRow(
            kid=generated.kid, alg=generated.alg, secret=generated.secret,
            active=True, created_at=now,
        ))


def _activate(session: Session, kid: str, now: datetime) -> None:
    session.execute(
        update(SigningKeyRow)
        .where(SigningKeyRow.active.is_(True), SigningKeyRow.kid != kid)
        .values(active=False, retired_at=now)
    )
    session.execute(
        update(SigningKeyRow).where(SigningKeyRow.kid == kid).values(active=True, retired_at=None)
    )


def load_keyring(session: Session) -> Keyring:
    """All kept keys, with the active one for signing."""
    rows = session.execute(select(SigningKeyRow)).scalars().all()
    active = [row.kid for row in rows if row.active]
    if len(active) != 1:
        raise SimError("SIGNING_KEY_UNAVAILABLE", 503, "no active signing key")
    return Keyring([to_signing_key(row) for row in rows], active_kid=active[0])


def rotate_signing_key(
    db: Database, *, kid: str, alg: Alg, secret: bytes | None, now: datetime,
    keep_for: timedelta,
) -> SigningKey:
    """Add a key and make it the active one; retired keys older than `keep_for` are pruned.

    One transaction: the new key, its activation and the pruning commit together. A weak or
    malformed `secret` raises ValueError, and nothing is written.
    """
    with db.write() as session:
        if session.get(SigningKeyRow, kid) is not None:
            raise SigningKeyError("SIGNING_KEY_EXISTS", 409, f"signing key {kid} already exists")
        key = SigningKey(kid=kid, alg=alg, secret=secret) if secret \
            else SigningKey.generate(kid, alg)
        session.add(SigningKeyRow(kid=key.kid, alg=key.alg, secret=key.secret, created_at=now))
        session.flush()
        _activate(session, kid, now)
        session.execute(
            delete(SigningKeyRow).where(
                SigningKeyRow.active.is_(False), SigningKeyRow.retired_at < now - keep_for
            )
        )
    return key


def remove_signing_key(db: Database, kid: str) -> None:
    """Delete a retired key: tokens it signed stop verifying at once."""
    with db.write() as session:
        row = session.get(SigningKeyRow, kid)
        if row is None:
            raise SigningKeyError("SIGNING_KEY_NOT_FOUND", 404, f"no signing key {kid}")
        if row.active:
            raise SigningKeyError("SIGNING_KEY_ACTIVE", 409, "rotate to a new key before removing")
        session.delete(row)


def describe_keys(db: Database) -> list[dict[str, object]]:
    """Public facts about the kept keys (never the secrets), for the control API."""
    with db.read() as session:
        rows = session.execute(select(SigningKeyRow).order_by(SigningKeyRow.created_at)).scalars()
        return [
            {"kid": r.kid, "alg": r.alg, "active": r.active,
             "retiredAt": r.retired_at.isoformat() if r.retired_at else None}
            for r in rows
        ]
