"""Verifying a presented QR token against the keys in the database (TPAS uses this)."""

from __future__ import annotations

from sim_trustly.keys import load_keyring
from sim_trustly.settings import TrustlySettings
from sim_trustly.tokens import QrClaims, verify_qr_token
from simkit.clock import Clock
from simkit.db import Database


def verify_presented_token(
    db: Database, settings: TrustlySettings, clock: Clock, token: str, *,
    merchant_id: str | None = None, egm_id: str | None = None,
) -> QrClaims:
    """Claims of `token` if it is genuine, unexpired and for this merchant and EGM.

    Raises InvalidQrToken (or ExpiredQrToken) otherwise. Keys are read at every call so a
    rotation or removal made by any worker is honoured at once.
    """
    with db.read() as session:
        keyring = load_keyring(session)
    return verify_qr_token(
        token, keyring, issuer=settings.issuer, now=clock.now(),
        merchant_id=merchant_id, egm_id=egm_id, leeway_s=settings.leeway_s,
    )
