"""The Scan's service layer: authenticate a merchant, validate the request, issue a QR token.

Knows nothing of Flask: the auth_service blueprint parses HTTP and calls these functions.
"""

from __future__ import annotations

import base64
import binascii
import re
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
from simkit.clock import Clock, format_instant, system_now
from simkit.db import Database
from simkit.errors import BadRequest, Forbidden, Unauthorized
from simkit.secure_random import secure_bytes
from simkit.wait import poll_until

T = TypeVar("T")

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
# A code is 16 bytes, 22 base64url characters: the second it was issued (4 bytes, big-endian,
# modulo 2**32), then 96 random bits. The stamp lets a lookup that misses tell a code issued a
# moment ago, whose row may still be on its way (see `await_issued`), from any other.
STAMP_BYTES = 4
RANDOM_BYTES = 12
_TOKENS: Table = QrTokenRow.__table__  # type: ignore[assignment]
# How long a lookup waits for a code another worker process has just issued (its row is
# stored a moment after the response, by that process's batch writer; under heavy write
# contention on SQLite that moment has reached half a second), and for how long after its
# issuance a code counts as just issued.
ISSUED_VISIBILITY_S = 3.0
JUST_ISSUED_S = 10
_STAMP_RANGE = 2**32


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


def new_code(now: datetime) -> str:
    """A fresh code stamped with `now`'s second (see STAMP_BYTES)."""
    stamp = (int(now.timestamp()) % _STAMP_RANGE).to_bytes(STAMP_BYTES, "big")
    raw = stamp + secure_bytes(RANDOM_BYTES)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def just_issued(code: str, now: datetime) -> bool:
    """Whether `code` carries a stamp from the last JUST_ISSUED_S seconds (a guess costs 96
    random bits, so only codes that look freshly issued are ever waited for)."""
    try:
        raw = base64.urlsafe_b64decode(code + "=" * (-len(code) % 4))
    except (ValueError, binascii.Error):
        return False
    if len(raw) != STAMP_BYTES + RANDOM_BYTES:
        return False
    age = (int(now.timestamp()) - int.from_bytes(raw[:STAMP_BYTES], "big")) % _STAMP_RANGE
    return age <= JUST_ISSUED_S


def await_issued(db: Database, code: str, find: Callable[[], T | None]) -> T | None:
    """`find()`'s answer about `code`, waiting for a token that was issued but not yet stored.

    A token's row is written by a background writer a moment after the CMS got its answer
    (simkit.batch_writer), so a lookup that finds nothing first stores what this process has
    queued, then, for a code stamped in the last few seconds, polls for another process's
    for up to ISSUED_VISIBILITY_S. Any other unknown code is answered at once: it was never
    issued, or so long ago that another process's row is stored. Codes are stamped, and the
    stamp read, in real time (the system clock), not by the sim's clock: the delay waited for
    is the batch writer's, which runs in real time, and a test or an operator may move the
    sim's clock on the moment after a QR was issued.
    """
    found = find()
    if found is not None:
        return found
    if writer_for(db).flush_if_pending():
        found = find()
    if found is not None or not just_issued(code, system_now()):
        return found
    return poll_until(find, timeout_s=ISSUED_VISIBILITY_S, interval_s=0.01)


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
    code = new_code(system_now())  # real time: see `await_issued`
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
