"""Redeeming a scanned QR code: look it up, check its JWT, and claim it for one payment.

The claim is one conditional UPDATE (`used_at` set only where it is still NULL and the token
has not expired), committed in the same transaction as the payment it pays for. Whatever the
number of phones, workers or restarts, one UPDATE matches the row; every other claim
matches nothing and is told why (used, expired, unknown).

A claim is handed back (`release`) only for a payment the bank refused, when nothing reached
the CMS and the deployment asks for it (`tpas_release_qr_on_bank_refusal`): `used_at` is
cleared in the transaction that ends that payment, which alone held the claim, so the code
is payable again and the next claim is as exclusive as the first.

Expiry: the claim honours the token's `exp` exactly. The JWT check allows the configured
leeway because a verifier's clock may differ from the issuer's; here the issuer and the
redeemer are one service on one clock, so a token is paid only strictly before its `exp`.

A token whose JWT no longer verifies (its signing key was removed, or the stored token was
tampered with) cannot be paid: 410 QR_CODE_INVALID, the same family as an expired code,
because the player's remedy is the same (scan the EGM's fresh QR).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn, cast

from sqlalchemy import Connection, CursorResult, bindparam, text, update
from sqlalchemy.orm import Session

from sim_trustly.auth_service.issuance import await_issued
from sim_trustly.auth_service.tokens import ExpiredQrToken, InvalidQrToken
from sim_trustly.auth_service.verifier import StoredKey, verify_stored_token
from sim_trustly.context import TrustlyContext
from sim_trustly.models import QrTokenRow
from sim_trustly.tpas.payments import PAYMENT_COLUMNS, PaymentRecord, driver_instant
from simkit.db import Database
from simkit.errors import SimError

_CODE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class QrCodeUnknown(SimError):
    """Raised when a scanned code was never issued (or has been forgotten by a reset)."""

    def __init__(self) -> None:
        super().__init__("QR_CODE_UNKNOWN", 404, "this QR code is not known")


class QrCodeExpired(SimError):
    """Raised when a scanned code is past its expiry: the EGM shows a fresh one."""

    def __init__(self) -> None:
        super().__init__("QR_CODE_EXPIRED", 410, "this QR code has expired; scan the new one")


class QrCodeInvalid(SimError):
    """Raised when a code's JWT no longer verifies (e.g. its signing key was removed)."""

    def __init__(self, reason: str) -> None:
        super().__init__("QR_CODE_INVALID", 410, "this QR code can no longer be used",
                         check=reason)


class QrCodeUsed(SimError):
    """Raised when a scanned code has already paid (or started paying) once."""

    def __init__(self) -> None:
        super().__init__("QR_CODE_USED", 409, "this QR code has already been used")


class QrCodeWrongMerchant(SimError):
    """Raised when a code's merchant is gone or its JWT names another merchant."""

    def __init__(self) -> None:
        super().__init__("QR_CODE_WRONG_MERCHANT", 403,
                         "this QR code does not belong to a merchant that may take payments")


@dataclass(frozen=True, slots=True)
class PresentedToken:
    """A stored QR token as redemption sees it: its merchant's display name, the key it was
    signed with (None once that key is removed) and, once used, the payment holding its claim
    (a payment whose claim was released is not it)."""

    code: str
    merchant_id: str
    merchant_name: str | None
    egm_id: str
    token: str
    expires_at: datetime
    used_at: datetime | None
    key: StoredKey | None = None
    payment: PaymentRecord | None = None


# One statement answers everything a scan or a payment needs to know about a code: the token,
# its merchant, its signing key (so verification needs no keyring read) and its payment.
# Plain SQL, because it runs on every scan and every payment on the thread's own driver
# connection (`Database.hot_read`), where a pooled SQLAlchemy execution costs ten times more.
# (The column names are our own table's, never input: S608 does not apply.)
_LOOKUP_SQL = f"""
SELECT t.code, t.merchant_id, m.name, t.egm_id, t.token, t.expires_at, t.used_at,
       k.kid, k.alg, k.secret, {", ".join(f"p.{column}" for column in PAYMENT_COLUMNS)}
FROM qr_tokens t
LEFT JOIN merchants m ON m.id = t.merchant_id
LEFT JOIN signing_keys k ON k.kid = t.kid
LEFT JOIN payments p ON p.qr_code = t.code AND p.claim_released_at IS NULL
WHERE t.code = :code
"""  # noqa: S608
_LOOKUP = text(_LOOKUP_SQL)
_TOKEN_COLUMNS = 7
_KEY_COLUMNS = 3


def _presented(values: Sequence[Any]) -> PresentedToken:
    """A lookup row as the driver returns it (SQLite gives timestamps as text)."""
    code, merchant_id, merchant_name, egm_id, token, expires_at, used_at = values[:_TOKEN_COLUMNS]
    kid, alg, secret = values[_TOKEN_COLUMNS:_TOKEN_COLUMNS + _KEY_COLUMNS]
    paid = values[_TOKEN_COLUMNS + _KEY_COLUMNS:]
    return PresentedToken(
        code, merchant_id, merchant_name, egm_id, token, driver_instant(expires_at),
        driver_instant(used_at) if used_at is not None else None,
        key=StoredKey(kid, alg, bytes(secret)) if kid is not None else None,
        payment=PaymentRecord.from_driver(paid) if paid[0] is not None else None,
    )


def find(db: Database, code: str, now: datetime) -> PresentedToken | None:
    """The token a code names, or None (odd codes are not even looked up): the hot-path read.

    A token issued a moment ago may not be stored yet (see `issuance.await_issued`).
    """
    if not _CODE.fullmatch(code):
        return None

    def read() -> PresentedToken | None:
        rows = db.hot_read(_LOOKUP_SQL, {"code": code})
        return _presented(rows[0]) if rows else None

    return await_issued(db, code, read)


def lookup(connection: Connection | Session, code: str) -> PresentedToken | None:
    """Like `find`, inside the caller's transaction (to explain a claim that failed)."""
    if not _CODE.fullmatch(code):
        return None
    row = connection.execute(_LOOKUP, {"code": code}).first()
    return _presented(tuple(row)) if row is not None else None


def refuse_if_unpayable(token: PresentedToken | None, now: datetime) -> PresentedToken:
    """Raise the player-facing error for a code that cannot pay now; used beats expired."""
    if token is None:
        raise QrCodeUnknown()
    if token.merchant_name is None:
        raise QrCodeWrongMerchant()
    if token.used_at is not None:
        raise QrCodeUsed()
    if token.expires_at <= now:
        raise QrCodeExpired()
    return token


def verify(ctx: TrustlyContext, token: PresentedToken, now: datetime) -> None:
    """Check the stored JWT against its signing key, its merchant and its EGM."""
    try:
        verify_stored_token(ctx.db, ctx.settings, token.token, token.key, now=now,
                            merchant_id=token.merchant_id, egm_id=token.egm_id)
    except ExpiredQrToken as exc:
        raise QrCodeExpired() from exc
    except InvalidQrToken as exc:
        if exc.reason == "audience":
            raise QrCodeWrongMerchant() from exc
        raise QrCodeInvalid(exc.reason) from exc


def presentable(ctx: TrustlyContext, code: str, now: datetime) -> PresentedToken:
    """The token behind `code` if it could be paid now (nothing is claimed yet)."""
    token = refuse_if_unpayable(find(ctx.db, code, now), now)
    verify(ctx, token, now)
    return token


_CLAIM = (
    update(QrTokenRow)
    .where(QrTokenRow.code == bindparam("claimed_code"), QrTokenRow.used_at.is_(None),
           QrTokenRow.expires_at > bindparam("now"))
    .values(used_at=bindparam("now"))
    .execution_options(synchronize_session=False)
)


def claim(connection: Connection | Session, code: str, now: datetime) -> None:
    """Mark the code used inside the caller's transaction, or raise why it cannot be.

    The caller commits the claim together with the payment it creates, so a claimed code
    always has its payment and a failed transaction leaves the code unused.
    """
    result = cast(CursorResult[Any], connection.execute(_CLAIM, {"claimed_code": code, "now": now}))
    if result.rowcount == 1:
        return
    _explain_refusal(lookup(connection, code), now)


_RELEASE = (
    update(QrTokenRow)
    .where(QrTokenRow.code == bindparam("released_code"), QrTokenRow.used_at.is_not(None))
    .values(used_at=None)
    .execution_options(synchronize_session=False)
)


def release(connection: Connection, code: str) -> None:
    """Make a claimed code payable again, inside the transaction that ends the payment that
    held the claim (and marks it released); the code's expiry still applies."""
    connection.execute(_RELEASE, {"released_code": code})


def refuse_claim(db: Database, code: str, now: datetime) -> NoReturn:
    """Raise why a claim of `code` at `now` matched nothing (a claim made in one statement
    that was not a transaction: the token is read again, as it stands now)."""
    with db.core_read() as connection:
        token = lookup(connection, code)
    _explain_refusal(token, now)


def _explain_refusal(token: PresentedToken | None, now: datetime) -> NoReturn:
    refuse_if_unpayable(token, now)
    raise QrCodeUsed()  # unreachable unless the row changed under us: fail closed
