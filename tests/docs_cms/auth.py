"""OAuth 2.0 client credentials for TPAS, and the admin Bearer token of the control hooks.

Access tokens are opaque (256 random bits), stored only as their SHA-256, and live 300 s on
the CMS's clock. Secrets are compared in constant time and never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import timedelta
from urllib.parse import parse_qs, unquote

from tests.docs_cms.clock import OffsetClock, iso, parse_instant
from tests.docs_cms.problems import Answer, Refused, ok, problem
from tests.docs_cms.store import Store

TOKEN_TTL = timedelta(seconds=300)
BEARER_CHALLENGE = 'Bearer realm="docs-cms"'


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class TokenIssuer:
    """Issues and checks TPAS's access tokens."""

    def __init__(self, store: Store, clock: OffsetClock, client_id: str,
                 client_secret: str) -> None:
        self.store, self.clock = store, clock
        self._client_id, self._client_secret = client_id, client_secret

    def issue(self, authorization: str | None, form: bytes) -> Answer:
        """The token endpoint: Basic client credentials (or body ones), grant client_credentials."""
        def refuse(status: int, code: str, error: str, detail: str, **extra: str) -> Answer:
            headers = {"WWW-Authenticate": 'Basic realm="docs-cms"'} if status == 401 else {}
            return problem(status, code, detail, headers, error=error, **extra)

        params = parse_qs(form.decode("utf-8", "replace"), keep_blank_values=True)
        if any(len(values) > 1 for values in params.values()):
            return refuse(400, "INVALID_REQUEST", "invalid_request", "A parameter is repeated.")
        grant = params.get("grant_type", [None])[0]
        if grant is None:
            return refuse(400, "INVALID_REQUEST", "invalid_request", "grant_type is missing.")
        if grant != "client_credentials":
            return refuse(400, "UNSUPPORTED_GRANT_TYPE", "unsupported_grant_type",
                          "Only client_credentials.", field="grant_type")
        basic = authorization is not None and authorization.startswith("Basic ")
        in_body = "client_id" in params or "client_secret" in params
        if basic and in_body:
            return refuse(400, "INVALID_REQUEST", "invalid_request", "Two client methods.")
        client_id = client_secret = ""
        if basic and authorization is not None:
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
                raw_id, _, raw_secret = decoded.partition(":")
                client_id, client_secret = unquote(raw_id), unquote(raw_secret)
            except ValueError:
                client_id = ""
        elif in_body:
            client_id = params.get("client_id", [""])[0]
            client_secret = params.get("client_secret", [""])[0]
        good = _same(client_id, self._client_id) & _same(client_secret, self._client_secret)
        if not good:
            return refuse(401, "INVALID_CLIENT", "invalid_client", "Unknown client or wrong "
                          "secret.")
        token = secrets.token_urlsafe(32)
        with self.store.write() as db:
            db.execute("INSERT INTO tokens VALUES (?, ?)",
                       (_digest(token), iso(self.clock.now() + TOKEN_TTL)))
        return ok(200, {"access_token": token, "token_type": "Bearer",
                        "expires_in": int(TOKEN_TTL.total_seconds())},
                  **{"Cache-Control": "no-store"})

    def check(self, authorization: str | None) -> None:
        """Refused (401 INVALID_TOKEN or TOKEN_EXPIRED, with a challenge) unless it is live."""
        if authorization is None or not authorization.startswith("Bearer "):
            raise Refused(problem(401, "INVALID_TOKEN", "A Bearer token is required.",
                                  {"WWW-Authenticate": BEARER_CHALLENGE}))
        with self.store.read() as db:
            row = db.execute("SELECT expires_at FROM tokens WHERE token_hash = ?",
                             (_digest(authorization[7:].strip()),)).fetchone()
        if row is None:
            raise Refused(problem(401, "INVALID_TOKEN", "Unknown token.", {
                "WWW-Authenticate": BEARER_CHALLENGE + ', error="invalid_token"'}))
        if self.clock.now() >= parse_instant(row["expires_at"]):
            raise Refused(problem(401, "TOKEN_EXPIRED", "The token expired; get a new one.", {
                "WWW-Authenticate": BEARER_CHALLENGE + ', error="invalid_token", '
                'error_description="The access token expired"'}))


def check_admin(authorization: str | None, admin_token: str) -> None:
    """Refused (401) unless `authorization` carries the admin Bearer token."""
    given = authorization[7:].strip() if authorization and authorization.startswith(
        "Bearer ") else ""
    if not _same(given, admin_token):
        raise Refused(problem(401, "UNAUTHORIZED", "The admin token is missing or wrong.",
                              {"WWW-Authenticate": 'Bearer realm="docs-cms-control"'}))
