"""Verifying a presented QR token against the keys in the database (TPAS uses this).

Keys are never cached across requests here: a removed key must stop verifying at once, in
every worker. What makes verification cheap instead is where the key comes from. Redemption
reads a token's signing key (by the kid issuance stored with it) in the same query as the
token, so the usual check needs no keyring read at all; only a token whose header names
another kid falls back to reading every key, which gives exactly the answer a full keyring
gives. Parsing a key (an ES256 PEM) is memoised on the key's bytes, which is safe because
the memo is keyed by everything the key is made of.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import cast

from sim_trustly.auth_service.keys import Alg, load_keyring
from sim_trustly.auth_service.tokens import (
    InvalidQrToken,
    Keyring,
    QrClaims,
    SigningKey,
    verify_qr_token,
)
from sim_trustly.settings import TrustlySettings
from simkit.clock import Clock
from simkit.db import Database


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A signing key's row as read alongside a token (kid, algorithm, secret)."""

    kid: str
    alg: str
    secret: bytes


@lru_cache(maxsize=64)
def _keyring_of(kid: str, alg: str, secret: bytes) -> Keyring:
    """A one-key keyring (the parsed key is reused while the same key keeps verifying)."""
    return Keyring([SigningKey(kid=kid, alg=cast(Alg, alg), secret=secret)], active_kid=kid)


def _verify(
    token: str, keyring: Keyring, settings: TrustlySettings, *, now: datetime,
    merchant_id: str | None, egm_id: str | None,
) -> QrClaims:
    return verify_qr_token(token, keyring, issuer=settings.issuer, now=now,
                           merchant_id=merchant_id, egm_id=egm_id, leeway_s=settings.leeway_s)


def verify_presented_token(
    db: Database, settings: TrustlySettings, clock: Clock, token: str, *,
    merchant_id: str | None = None, egm_id: str | None = None, now: datetime | None = None,
) -> QrClaims:
    """Claims of `token` if it is genuine, unexpired and for this merchant and EGM.

    Raises InvalidQrToken (or ExpiredQrToken) otherwise. Every kept key is read at each
    call, so a rotation or removal made by any worker is honoured at once.
    """
    with db.read() as session:
        keyring = load_keyring(session)
    return _verify(token, keyring, settings, now=clock.now() if now is None else now,
                   merchant_id=merchant_id, egm_id=egm_id)


def verify_stored_token(
    db: Database, settings: TrustlySettings, token: str, key: StoredKey | None, *,
    now: datetime, merchant_id: str, egm_id: str,
) -> QrClaims:
    """Like `verify_presented_token`, with the key read together with the token.

    `key` is the row of the kid the token was issued under, or None when that key is gone.
    Either way the answer is the one the full keyring would give (see the module docstring).
    """
    if key is not None:
        try:
            return _verify(token, _keyring_of(key.kid, key.alg, key.secret), settings,
                           now=now, merchant_id=merchant_id, egm_id=egm_id)
        except InvalidQrToken as exc:
            if exc.reason != "unknown_kid":
                raise
    with db.read() as session:
        keyring = load_keyring(session)
    return _verify(token, keyring, settings, now=now, merchant_id=merchant_id, egm_id=egm_id)
