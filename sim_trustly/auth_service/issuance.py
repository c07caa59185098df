"""The Scan's service layer: authenticate a merchant, validate the request, issue a QR token.

Knows nothing of Flask: the auth_service blueprint parses HTTP and calls these functions.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Table

from sim_trustly.auth_service import credentials
from sim_trustly.auth_service.credentials import LockoutPolicy, MerchantView
from sim_trustly.auth_service.keyring_cache import KeyringCache
from sim_trustly.auth_service.tokens import issue_qr_token
from sim_trustly.errors import AUTH_CHALLENGE
from sim_trustly.models import QrTokenRow
from sim_trustly.settings import TrustlySettings
from simkit.batch_writer import writer_for
from simkit.clock import Clock, format_instant
from simkit.db import Database
from simkit.errors import BadRequest, Forbidden, Unauthorized
from simkit.wait import poll_until

T = TypeVar("T")

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
CODE_BYTES = 16  # 128 bits, 22 base64url characters
_TOKENS: Table = QrTokenRow.__table__  # type: ignore[assignment]
# How long a lookup waits for a code another worker process has just issued (its row is
# stored a moment after the response, by that process's batch writer).
ISSUED_VISIBILITY_S = 0.5


@dataclass(frozen=True)
class QrTokenRequest:
    """A validated body of `POST /auth-service/api/oauth2/qrcode/token`."""

    merchant_id: str
    egm_id: str
    location_id: str | None


@dataclass(frozen=True)
class IssuedQrToken:
    """What the CMS gets back: the URL to render, the JWT, and when it expires."""

    url: str
    token: str
    code: str
    expires_at: datetime
    expires_at_wire: str | int

    def to_json(self) -> dict[str, Any]:
        """The response body."""
        return {"url": self.url, "token": self.token, "expiresAt": self.expires_at_wire}


def _identifier(body: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{name} is required", code="MISSING_FIELD", field=name)
        return None
    if not isinstance(value, str) or not _ID.match(value):
        raise BadRequest(
            f"{name} must be a string of 1-64 letters, digits or ._:- characters",
            code="INVALID_FIELD", field=name,
        )
    return value


def parse_token_request(body: Any) -> QrTokenRequest:
    """Validate the JSON body; unknown members are ignored, as an API that may grow should."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", code="INVALID_REQUEST")
    merchant_id = _identifier(body, "merchantId", required=True)
    egm_id = _identifier(body, "egmId", required=True)
    assert merchant_id is not None and egm_id is not None
    return QrTokenRequest(merchant_id, egm_id, _identifier(body, "locationId", required=False))


@dataclass(frozen=True)
class Authenticated:
    """A merchant that proved its credential, and the signing kid active at that moment."""

    merchant: MerchantView
    active_kid: str | None


def authenticate(
    db: Database, access_id: str, access_key: str, now: datetime, policy: LockoutPolicy,
    *, source: str | None = None,
) -> Authenticated:
    """The merchant of a valid credential; failures count towards the lockout of `access_id`
    from `source` (the caller's address; ignored when the policy's scope is the accessId).

    The common case (right key, no failures anywhere) costs one read; failures take the
    write path, and any failure on record costs one more read to check this caller's lock.
    """
    key = policy.source_key(source)
    with db.core_read() as connection:
        found = credentials.lookup_credential(connection, access_id)
    if found is None or found.has_failures:
        with db.read() as session:
            credentials.raise_if_locked(session, access_id, key, now)
    if not credentials.key_matches(found, access_key):
        with db.write() as session:
            locked = credentials.record_failure(session, access_id, key, now, policy)
        if locked is not None:  # a guess that raced past the threshold
            raise locked
        raise Unauthorized(
            "invalid accessId or accessKey", challenge=AUTH_CHALLENGE,
            code="AUTHENTICATION_FAILED",
        )
    assert found is not None
    if found.has_failures:
        with db.write() as session:
            credentials.forget_stale_failures(session, access_id, now, policy)
    return Authenticated(found.merchant, found.active_kid)


def await_issued(db: Database, find: Callable[[], T | None]) -> T | None:
    """`find()`'s answer about a code, waiting for a token that was issued but not yet stored.

    A token's row is written by a background writer a moment after the CMS got its answer
    (simkit.batch_writer), so a lookup that finds nothing first stores what this process has
    queued, then polls briefly for another process's. A code that was never issued costs the
    caller `ISSUED_VISIBILITY_S`.
    """
    found = find()
    if found is not None:
        return found
    writer_for(db).flush()
    return poll_until(find, timeout_s=ISSUED_VISIBILITY_S)


def flush_issued(db: Database) -> None:
    """Store every token this process has issued so far (before a reset or a state dump)."""
    writer_for(db).flush()


def _expires_wire(moment: datetime, fmt: str) -> str | int:
    if fmt == "epoch_ms":
        return int(moment.timestamp() * 1000)
    return format_instant(moment)


def issue_for_merchant(
    db: Database, caller: Authenticated, request: QrTokenRequest, settings: TrustlySettings,
    *, clock: Clock, keyrings: KeyringCache,
) -> IssuedQrToken:
    """Issue a token for one EGM of the caller; the credential's merchant must be asked for.

    The token's row is stored by the database's batch writer, off the request path: see
    `await_issued` for how lookups see it.
    """
    merchant = caller.merchant
    if request.merchant_id != merchant.id:
        raise Forbidden(
            "the credential may not request tokens for this merchantId",
            code="MERCHANT_NOT_ALLOWED", field="merchantId",
        )
    now = clock.now().replace(microsecond=0)  # JWT times are whole seconds; keep both equal
    lifetime = merchant.token_lifetime_s or settings.token_lifetime_s
    code = secrets.token_urlsafe(CODE_BYTES)
    keyring = keyrings.signing_keyring(db, caller.active_kid)
    token = issue_qr_token(
        keyring, issuer=settings.issuer, merchant_id=merchant.id, egm_id=request.egm_id,
        jti=code, issued_at=now, lifetime_s=lifetime, location_id=request.location_id,
    )
    expires_at = now + timedelta(seconds=lifetime)
    row = {
        "code": code, "merchant_id": merchant.id, "egm_id": request.egm_id,
        "location_id": request.location_id, "kid": keyring.active.kid, "token": token,
        "issued_at": now, "expires_at": expires_at,
    }
    writer_for(db).submit(_TOKENS, lambda: row)
    fmt = merchant.expires_at_format or settings.expires_at_format
    return IssuedQrToken(
        url=f"{settings.public_base_url.rstrip('/')}/scan/{code}", token=token, code=code,
        expires_at=expires_at, expires_at_wire=_expires_wire(expires_at, fmt),
    )
