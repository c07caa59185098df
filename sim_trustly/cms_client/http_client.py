"""HTTP plumbing shared by CMS adapters: the client per profile, the in-process transport
wrapper, and authentication (static Basic / API-key headers, or a cached OAuth2 token).

Partner adapters may use these too: `make_http_client(profile, transport)` gives them the
profile's base URL, timeouts and transport, and `CmsAuth` their credentials.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from sim_trustly.cms_client.partner_profiles import CmsProfile
from simkit.clock import Clock, SystemClock
from simkit.correlation import propagate_correlation_id
from simkit.http_transport import StdlibTransport

USER_AGENT = "scanpay-sim-tpas/0.1"
# A token is refreshed when this share of its lifetime (at most 30 s) is left, so a call
# never leaves with a token about to expire in flight.
REFRESH_SHARE = 0.1
REFRESH_MARGIN_CAP_S = 30.0
# 401 codes after which a fresh token may succeed: expired, or forgotten (a CMS reset).
REFRESHABLE_CODES = frozenset({"TOKEN_EXPIRED", "INVALID_TOKEN"})


class CmsUnavailable(Exception):
    """No usable answer could be had from the CMS (e.g. its token endpoint refused us)."""


class InProcessTransport(httpx.BaseTransport):
    """Wraps an in-process transport so a connection a fault dropped is an httpx error.

    Over a socket a dropped connection reaches httpx as `RemoteProtocolError`. In process
    there is no socket: the CMS's fault middleware raises `ConnectionError`
    (`simkit.faults.ConnectionDropped`) through the transport instead. Translating it here,
    once, means every adapter, the reference one and partners' alike, sees the same
    `httpx.TransportError` in both set-ups. Any other exception is a bug and propagates.
    """

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send through the wrapped transport; a dropped connection becomes an httpx error."""
        try:
            return self._inner.handle_request(request)
        except ConnectionError as exc:
            raise httpx.RemoteProtocolError(f"connection dropped: {exc}", request=request) from exc

    def close(self) -> None:
        """Close the wrapped transport."""
        self._inner.close()


def profile_timeout(profile: CmsProfile) -> httpx.Timeout:
    """The profile's connect and read timeouts."""
    return httpx.Timeout(profile.read_timeout_s, connect=profile.connect_timeout_s)


def make_transport(transport: httpx.BaseTransport | None) -> httpx.BaseTransport:
    """The transport a CMS client sends through: the in-process one given, or sockets."""
    # Over a socket, the standard library's HTTP/1.1 costs a third of httpcore's CPU per call.
    return InProcessTransport(transport) if transport is not None else StdlibTransport()


def make_http_client(profile: CmsProfile, transport: httpx.BaseTransport | None, *,
                     own_transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """A keep-alive client for one profile: base URL, timeouts, transport, correlation ids.

    `own_transport` is one `make_transport` already made (the client then owns and closes it).
    """
    chosen = own_transport or make_transport(transport)
    return httpx.Client(base_url=profile.base_url, timeout=profile_timeout(profile),
                        transport=chosen, headers={"User-Agent": USER_AGENT},
                        follow_redirects=False,
                        event_hooks={"request": [propagate_correlation_id]})


def problem_code(response: httpx.Response) -> str | None:
    """The `code` member of a JSON (problem) body, or None when there is none to read."""
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: datetime | None  # None: the CMS gave no lifetime; keep it until a 401


class TokenCache:
    """One OAuth2 client-credentials token per profile, shared by threads.

    The lock is held while a token is fetched, so threads that find the token missing or
    stale wait for one fetch instead of each making their own.
    """

    def __init__(self, profile: CmsProfile, client: httpx.Client, clock: Clock) -> None:
        self._profile = profile
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._token: _Token | None = None

    def get(self) -> str:
        """A token that is not about to expire, fetched when needed."""
        with self._lock:
            token = self._token
            if token is None or (token.refresh_at and self._clock.now() >= token.refresh_at):
                token = self._token = self._fetch()
            return token.value

    def invalidate(self, rejected: str) -> None:
        """Forget `rejected` (the CMS refused it); a newer token another thread got stays."""
        with self._lock:
            if self._token is not None and self._token.value == rejected:
                self._token = None

    def _fetch(self) -> _Token:
        auth = self._profile.auth
        response = self._client.post(
            self._profile.paths.token, data={"grant_type": "client_credentials"},
            auth=(auth.client_id, auth.client_secret),
        )
        if response.status_code != 200:
            raise CmsUnavailable(f"token endpoint answered {response.status_code} "
                                 f"{problem_code(response) or ''}".rstrip())
        value, lifetime = _token_fields(response)
        if lifetime is None:
            return _Token(value, None)
        margin = min(REFRESH_MARGIN_CAP_S, lifetime * REFRESH_SHARE)
        return _Token(value, self._clock.now() + timedelta(seconds=lifetime - margin))


def _token_fields(response: httpx.Response) -> tuple[str, float | None]:
    """(access_token, expires_in) of a token response; CmsUnavailable when unreadable."""
    try:
        body: Any = response.json()
    except ValueError as exc:
        raise CmsUnavailable("token endpoint answered a body that is not JSON") from exc
    value = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise CmsUnavailable("token endpoint answered no access_token")
    lifetime = body.get("expires_in")
    valid = isinstance(lifetime, int | float) and not isinstance(lifetime, bool) and lifetime > 0
    return value, float(lifetime) if valid else None


class CmsAuth:
    """The Authorization (or API-key) header of each request to one CMS."""

    def __init__(self, profile: CmsProfile, client: httpx.Client, clock: Clock | None = None):
        self._auth = profile.auth
        self._tokens = (TokenCache(profile, client, clock or SystemClock())
                        if profile.auth.kind == "oauth2_client_credentials" else None)

    def headers(self) -> dict[str, str]:
        """Headers that authenticate one request (may fetch a token: CmsUnavailable)."""
        if self._tokens is not None:
            return {"Authorization": f"Bearer {self._tokens.get()}"}
        if self._auth.kind == "basic":
            pair = f"{self._auth.username}:{self._auth.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
        return {self._auth.header: self._auth.key}

    def retry_after_refresh(self, response: httpx.Response, sent: Mapping[str, str]) -> bool:
        """After a 401: drop the token it refused and say whether one retry may succeed.

        True only for OAuth2 and a 401 whose code says the token expired or is unknown;
        static credentials cannot get better by retrying.
        """
        if self._tokens is None or response.status_code != 401:
            return False
        if problem_code(response) not in REFRESHABLE_CODES:
            return False
        self._tokens.invalidate(sent["Authorization"].removeprefix("Bearer "))
        return True
