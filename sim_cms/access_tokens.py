"""OAuth2 client credentials for the CWS API: client authentication and Bearer tokens.

Tokens are 256 random bits handed out once and stored only as their SHA-256, so a database
dump cannot be replayed against the API. Their expiry is on the injected clock. Expired tokens
are kept a day before they are pruned, so a client that comes back late is told
TOKEN_EXPIRED (refresh) rather than INVALID_TOKEN (something is wrong). A token carries the
scopes granted when it was issued (`sim_cms.scopes`). Tokens found valid are remembered in a
`TokenCache`, so the Bearer check of a hot API call reads no database. This module knows
nothing of Flask; `oauth_api` is its HTTP face.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from sim_cms import client_lockout, scopes
from sim_cms.errors import BEARER_CHALLENGE
from sim_cms.models import AccessToken, OAuthClient
from sim_cms.reads import single_read
from sim_cms.seed import hash_secret
from sim_cms.settings import CmsSettings
from simkit.db import Database
from simkit.errors import BadRequest, Forbidden, Unauthorized

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
    scope: str

    def to_json(self) -> dict[str, object]:
        """The RFC 6749 §5.1 token response (with the granted `scope`, always)."""
        return {"access_token": self.access_token, "token_type": "Bearer",
                "expires_in": self.expires_in, "scope": self.scope}


@dataclass(frozen=True)
class Grant:
    """What a valid Bearer token allows: its client and the scopes it was granted."""

    client_id: str
    scopes: frozenset[str]

    def require(self, scope: str | None) -> None:
        """403 INSUFFICIENT_SCOPE unless the token was granted `scope` (None: no scope is
        declared for the operation, so no token may call it)."""
        if scope is None or scope not in self.scopes:
            needed = scope or "(none declared)"
            challenge = (f'{BEARER_CHALLENGE}, error="insufficient_scope", '
                         f'scope="{scope or ""}"')
            raise Forbidden(f"the access token lacks the scope {needed} this operation needs",
                            code="INSUFFICIENT_SCOPE", error="insufficient_scope",
                            scope=scope or "", headers={"WWW-Authenticate": challenge})


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


def client_matches(db: Database, client_id: str, client_secret: str) -> bool:
    """Whether `client_secret` is `client_id`'s secret.

    The comparison is constant-time, and an unknown client id costs the same work as a wrong
    secret, so timing tells an attacker neither.
    """
    with db.read() as session:
        client = session.get(OAuthClient, client_id)
    salt, expected = (client.salt, client.secret_hash) if client else (_DUMMY_SALT, _DUMMY_HASH)
    matches = hmac.compare_digest(hash_secret(client_secret, salt), expected)
    return client is not None and matches


def authenticate_client(
    db: Database, candidates: Sequence[tuple[str, str]], source: str | None, now: datetime,
    settings: CmsSettings,
) -> str:
    """The client id that one of `candidates` (client id and secret, as sent and then
    form-decoded) authenticates, calling from the address `source`.

    A locked-out caller gets 429 before any secret is looked at; a failure is counted once
    per request, under the id last tried (its own transaction, so the count commits even
    though the request is refused); a success forgets the client's ended failures.
    """
    policy = client_lockout.LockoutPolicy.of(settings)
    source_key = policy.source_key(source)
    with db.read() as session:
        for candidate, _ in candidates:
            client_lockout.raise_if_locked(session, candidate, source_key, now)
    for candidate, candidate_secret in candidates:
        if client_matches(db, candidate, candidate_secret):
            _forget_ended_failures(db, candidate, now, policy)
            return candidate
    with db.write() as session:
        locked = client_lockout.record_failure(session, candidates[-1][0], source_key, now,
                                               policy)
    if locked is not None:  # this very failure was past the threshold
        raise locked
    raise invalid_client("client authentication failed")


def _forget_ended_failures(db: Database, client_id: str, now: datetime,
                           policy: client_lockout.LockoutPolicy) -> None:
    with db.read() as session:
        if not client_lockout.has_counts(session, client_id):
            return
    with db.write() as session:
        client_lockout.forget_ended(session, client_id, now, policy)


def granted_scopes(client_id: str, requested: str | None, settings: CmsSettings) -> frozenset[str]:
    """The scopes to grant `client_id`: all it is allowed, or the `requested` subset.

    Asking for a scope that is unknown or that the client is not allowed is refused whole
    (400 INVALID_SCOPE, RFC 6749 §5.2 `invalid_scope`), never silently narrowed.
    """
    allowed = next((frozenset(c.scopes) for c in settings.clients if c.client_id == client_id),
                   frozenset())
    if requested is None or not requested.strip():
        return allowed
    asked = scopes.parse(requested)
    refused = sorted(asked - allowed)
    if refused:
        raise BadRequest(f"scope not allowed for this client: {' '.join(refused)}",
                         code="INVALID_SCOPE", error="invalid_scope", field="scope")
    return asked


def issue_token(db: Database, client_id: str, granted: frozenset[str], settings: CmsSettings,
                now: datetime) -> IssuedToken:
    """Issue a Bearer token for `client_id` with the scopes `granted`, valid for
    `access_token_ttl_s` from `now`."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    scope = scopes.render(granted)
    with db.write() as session:
        _prune(session, now)
        session.add(AccessToken(
            token_hash=token_hash(token), client_id=client_id, issued_at=now,
            expires_at=now + timedelta(seconds=settings.access_token_ttl_s), scope=scope,
        ))
    return IssuedToken(access_token=token, expires_in=settings.access_token_ttl_s, scope=scope)


def _prune(session: Session, now: datetime) -> None:
    session.execute(delete(AccessToken).where(AccessToken.expires_at < now - PRUNE_AFTER))


@dataclass(frozen=True)
class _Known:
    grant: Grant
    expires_at: datetime
    checked_at: datetime


class TokenCache:
    """Tokens this process found in the database, by hash, so checking them reads nothing.

    Only tokens that exist are remembered (an unknown one is looked up every time: it may
    have been issued by another process a moment ago). Expiry is judged on the clock from
    the remembered `expires_at`, exactly as from the row. An entry is trusted for
    `REVALIDATE` of clock time and then looked up again, which bounds how long a token that
    another process's reset deleted stays usable here; this process's own reset clears the
    cache at once (`clear`, wired to the control API's reset).
    """

    REVALIDATE = timedelta(seconds=5)
    MAX_ENTRIES = 10_000  # issued tokens live 300 s; a full cache is simply emptied

    def __init__(self) -> None:
        self._known: dict[str, _Known] = {}
        self._lock = threading.Lock()

    def get(self, digest: str, now: datetime) -> _Known | None:
        """The remembered row, unless it is due for a fresh look (or the clock went back)."""
        known = self._known.get(digest)
        if known is None or not known.checked_at <= now < known.checked_at + self.REVALIDATE:
            return None
        return known

    def put(self, digest: str, known: _Known) -> None:
        """Remember a row just read from the database."""
        with self._lock:
            if len(self._known) >= self.MAX_ENTRIES:
                self._known.clear()
            self._known[digest] = known

    def clear(self) -> None:
        """Forget everything (the tokens were deleted)."""
        with self._lock:
            self._known.clear()


def check_token(
    db: Database, token: str, now: datetime, cache: TokenCache | None = None
) -> Grant:
    """The client and scopes of a Bearer token; 401 INVALID_TOKEN or TOKEN_EXPIRED if none.

    A token is valid while `now < expires_at`: at the expiry instant it is already expired.
    """
    digest = token_hash(token)
    known = cache.get(digest, now) if cache is not None else None
    if known is None:
        with single_read(db) as connection:
            row = connection.execute(
                select(AccessToken.client_id, AccessToken.expires_at, AccessToken.scope)
                .where(AccessToken.token_hash == digest)
            ).first()
        if row is None:
            raise bearer_error("INVALID_TOKEN", "the access token is not known")
        known = _Known(Grant(row.client_id, scopes.parse(row.scope)), row.expires_at, now)
        if cache is not None:
            cache.put(digest, known)
    if now >= known.expires_at:
        raise bearer_error("TOKEN_EXPIRED", "the access token has expired")
    return known.grant
