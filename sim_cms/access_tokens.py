"""OAuth2 client credentials for the CWS API: client authentication and Bearer tokens.

Tokens are 256 random bits handed out once and stored only as their SHA-256, so a database
dump cannot be replayed against the API. Their expiry is on the injected clock. Expired tokens
are kept a day before they are pruned, so a client that comes back late is told
TOKEN_EXPIRED (refresh) rather than INVALID_TOKEN (something is wrong). This module knows
nothing of Flask; `oauth` is its HTTP face.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from sim_cms.errors import BEARER_CHALLENGE
from sim_cms.models import AccessToken, OAuthClient
from sim_cms.seed import hash_secret
from sim_cms.settings import CmsSettings
from simkit.db import Database
from simkit.errors import Unauthorized

BASIC_CHALLENGE = 'Basic realm="cws"'
PRUNE_AFTER = timedelta(days=1)
TOKEN_BYTES = 32  # 256 bits
# Compared against when the client id is unknown, so that case takes as long as a wrong secret.
_DUMMY_SALT = b"\x00" * 16
_DUMMY_HASH = hash_secret("", _DUMMY_SALT)


@dataclass(frozen=True)
class IssuedToken:
    """A freshly issued access token (the only time its clear text exists)."""

    access_token: str
    expires_in: int

    def to_json(self) -> dict[str, object]:
        """The RFC 6749 §5.1 token response."""
        return {"access_token": self.access_token, "token_type": "Bearer",
                "expires_in": self.expires_in}


def invalid_client(message: str) -> Unauthorized:
    """401 INVALID_CLIENT with a Basic challenge (RFC 6749 §5.2 `invalid_client`)."""
    return Unauthorized(message, challenge=BASIC_CHALLENGE, code="INVALID_CLIENT",
                        error="invalid_client")


def bearer_error(code: str, description: str) -> Unauthorized:
    """401 for a Bearer token the API cannot accept, with the RFC 6750 §3 challenge."""
    challenge = (f'{BEARER_CHALLENGE}, error="invalid_token", '
                 f'error_description="{description}"')
    return Unauthorized(description, challenge=challenge, code=code)


def missing_token() -> Unauthorized:
    """401 INVALID_TOKEN for a request without credentials (RFC 6750 §3.1: no error code)."""
    return Unauthorized("a Bearer access token is required (POST /cws/v1/oauth/token)",
                        challenge=BEARER_CHALLENGE, code="INVALID_TOKEN")


def token_hash(token: str) -> str:
    """The stored form of an access token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def authenticate_client(db: Database, client_id: str, client_secret: str) -> str:
    """Return `client_id` if the secret is right, else raise 401 INVALID_CLIENT.

    The comparison is constant-time, and an unknown client id costs the same work as a wrong
    secret, so timing tells an attacker neither.
    """
    with db.read() as session:
        client = session.get(OAuthClient, client_id)
    salt, expected = (client.salt, client.secret_hash) if client else (_DUMMY_SALT, _DUMMY_HASH)
    matches = hmac.compare_digest(hash_secret(client_secret, salt), expected)
    if client is None or not matches:
        raise invalid_client("client authentication failed")
    return client_id


def issue_token(db: Database, client_id: str, settings: CmsSettings, now: datetime) -> IssuedToken:
    """Issue a Bearer token for `client_id` valid for `access_token_ttl_s` from `now`."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with db.write() as session:
        _prune(session, now)
        session.add(AccessToken(
            token_hash=token_hash(token), client_id=client_id, issued_at=now,
            expires_at=now + timedelta(seconds=settings.access_token_ttl_s),
        ))
    return IssuedToken(access_token=token, expires_in=settings.access_token_ttl_s)


def _prune(session: Session, now: datetime) -> None:
    session.execute(delete(AccessToken).where(AccessToken.expires_at < now - PRUNE_AFTER))


def check_token(db: Database, token: str, now: datetime) -> str:
    """The client id a Bearer token was issued to; 401 INVALID_TOKEN or TOKEN_EXPIRED if not.

    A token is valid while `now < expires_at`: at the expiry instant it is already expired.
    """
    with db.read() as session:
        row = session.get(AccessToken, token_hash(token))
    if row is None:
        raise bearer_error("INVALID_TOKEN", "the access token is not known")
    if now >= row.expires_at:
        raise bearer_error("TOKEN_EXPIRED", "the access token has expired")
    return row.client_id
