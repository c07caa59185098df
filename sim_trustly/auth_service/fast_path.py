"""The QR Code API's common case served below Flask: the hottest request of a casino floor.

Every EGM asks for a new QR token every few minutes, and load testers drive this endpoint
hardest, so it must cost less than an empty Flask endpoint. Flask's request machinery alone
costs more than everything this endpoint really does (check a credential, sign a JWT, store one
row), so the common case is answered by a small WSGI layer in front of the app:

- only a well-formed request from a known credential with the right key, no lockout state,
  no fault rule for the path, for the credential's own merchant, is answered here;
- anything else falls through to the Flask view (`auth_service.py`) untouched, which stays the
  one place that decides errors, lockouts and faults. Both paths share the validation and
  issuance functions of `issuance.py`, so they cannot disagree on what a valid request is.

Credentials are cached per process for `CREDENTIAL_TTL_S`: a change made through the control
API clears this process's cache at once (see `app.py`), and other worker processes see it
within the TTL. A failed key check is never cached: it takes the Flask path, which counts it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from sim_trustly.auth_service import credentials
from sim_trustly.auth_service.credentials import CredentialLookup
from sim_trustly.auth_service.issuance import Authenticated, issue_for_merchant, parse_token_request
from sim_trustly.context import TrustlyContext
from simkit.clock import SystemClock, monotonic
from simkit.errors import SimError
from simkit.fast_path import InlineAnswer, WsgiApp, journal_exchange, read_json_body
from simkit.faults import FaultPlan
from simkit.http import parse_basic_auth
from simkit.journal import CORRELATION_HEADER, Journal

TOKEN_PATH = "/auth-service/api/oauth2/qrcode/token"  # noqa: S105 - a path, not a secret
CREDENTIAL_TTL_S = 1.0


@dataclass(frozen=True)
class _Cached:
    lookup: CredentialLookup
    until: float  # monotonic seconds


class CredentialCache:
    """Successful credential lookups of this process, kept for a short time."""

    def __init__(self, ttl_s: float = CREDENTIAL_TTL_S) -> None:
        self._ttl_s = ttl_s
        self._entries: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def get(self, ctx: TrustlyContext, access_id: str) -> CredentialLookup | None:
        """The credential of `access_id`, read from the database at most once per TTL."""
        cached = self._entries.get(access_id)
        now = monotonic()
        if cached is not None and cached.until > now:
            return cached.lookup
        with ctx.db.core_read() as connection:
            found = credentials.lookup_credential(connection, access_id)
        if found is not None:
            with self._lock:
                self._entries[access_id] = _Cached(found, now + self._ttl_s)
        return found

    def peek(self, access_id: str) -> CredentialLookup | None:
        """The credential of `access_id` if this process holds a fresh copy; never reads."""
        cached = self._entries.get(access_id)
        return cached.lookup if cached is not None and cached.until > monotonic() else None

    def forget(self, access_id: str) -> None:
        """Drop one accessId (after a failure on it)."""
        with self._lock:
            self._entries.pop(access_id, None)

    def clear(self) -> None:
        """Drop everything (after any change through the control API)."""
        with self._lock:
            self._entries.clear()


class TokenFastPath:
    """WSGI middleware answering the QR Code API's common case; everything else goes to Flask."""

    def __init__(
        self, app: WsgiApp, ctx: TrustlyContext, *, cache: CredentialCache,
        journal: Journal | None = None, faults: FaultPlan | None = None,
    ) -> None:
        self._app = app
        self._ctx = ctx
        self._cache = cache
        self._journal = journal
        self._faults = faults
        self._inline = isinstance(ctx.clock, SystemClock)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        answered = self._answer(environ, parse_basic_auth(environ.get("HTTP_AUTHORIZATION"))) \
            if _is_token_request(environ) else None
        if answered is None:
            return self._app(environ, start_response)
        headers, answer = answered
        start_response("200 OK", headers)
        return [answer]

    def answer_inline(self, environ: dict[str, Any]) -> InlineAnswer | None:
        """The answer to a request this layer can give without waiting on anything (no
        database read, no lock another request may hold); None to run it as usual.

        For a server front that would otherwise hand every request to a thread and back
        (`simkit.rsgi_front`): the common QR token request, a cached credential signing a
        token, costs less than that hand-over. Only with the system clock (a controllable
        clock is read from the database), a fresh copy of the fault rules and a credential
        this process holds.
        """
        if not self._inline or not _is_token_request(environ):
            return None
        basic = parse_basic_auth(environ.get("HTTP_AUTHORIZATION"))
        if basic is None or self._cache.peek(basic[0]) is None:
            return None
        if self._faults is not None and not self._faults.copy_is_fresh():
            return None
        answered = self._answer(environ, basic)
        return None if answered is None else (200, *answered)

    def _answer(self, environ: dict[str, Any], basic: tuple[str, str] | None,
                ) -> tuple[list[tuple[str, str]], bytes] | None:
        """(headers, body) of a token issued here, the exchange journaled; None for Flask."""
        started = monotonic()
        body = read_json_body(environ, self._ctx.settings.max_body_bytes)
        answer = None if body is None or basic is None else self._issue(body, basic)
        if answer is None:
            return None
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
        if self._journal is not None:
            headers.append((CORRELATION_HEADER, journal_exchange(
                self._journal, environ, path=TOKEN_PATH, status=200, body=body or b"",
                answer=answer, headers=headers, started=started)))
        return headers, answer

    def _issue(self, body: bytes, basic: tuple[str, str]) -> bytes | None:
        """The response body of a token issued here, or None to let Flask answer."""
        ctx = self._ctx
        if self._faults is not None and self._faults.may_fire("POST", TOKEN_PATH):
            return None
        found = self._cache.get(ctx, basic[0])
        if found is None or found.locked_until is not None or found.has_failures:
            return None
        if not credentials.key_matches(found, basic[1]):
            self._cache.forget(basic[0])
            return None
        try:
            token_request = parse_token_request(orjson.loads(body))
            issued = issue_for_merchant(
                ctx.db, Authenticated(found.merchant, found.active_kid), token_request,
                ctx.settings, clock=ctx.clock, keyrings=ctx.keyrings,
            )
        except (SimError, ValueError):
            return None  # the Flask view answers this request with its error
        return orjson.dumps(issued.to_json(), option=orjson.OPT_SORT_KEYS)


def _is_token_request(environ: dict[str, Any]) -> bool:
    return environ.get("PATH_INFO") == TOKEN_PATH and environ.get("REQUEST_METHOD") == "POST"
