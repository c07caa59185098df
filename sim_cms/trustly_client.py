"""The CMS's client of Trustly's QR Code API: one call, one typed outcome.

`request_qr_token` either returns an `AcquiredQr` or raises `TrustlyUnavailable`; every way a
remote service can fail (bad credentials, lockout, 5xx, timeout, refused connection, a body
that is not what the contract promises) ends in that one exception, so the rotation loop and
the views can record and show it instead of crashing.
"""

from __future__ import annotations

import base64
import math
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from sim_cms.settings import TrustlyLink
from simkit.clock import parse_instant
from simkit.http_transport import StdlibTransport, exchange_through

USER_AGENT = "scanpay-sim-cms/0.1"
TOKEN_PATH = "/auth-service/api/oauth2/qrcode/token"  # noqa: S105 - a path, not a secret
MAX_URL_BYTES = 1024  # simkit.qr renders at most this much; a longer url is not a QR we can show
MAX_TOKEN_ID_CHARS = 128  # QrDisplay.qr_token_id's column width
MAX_RETRY_AFTER_S = 86_400


@dataclass(frozen=True)
class AcquiredQr:
    """A QR token as Trustly issued it: `url` goes into the QR, `qr_token_id` names it."""

    url: str
    token: str
    expires_at: datetime
    qr_token_id: str


class TrustlyUnavailable(Exception):
    """Raised when Trustly gave no usable QR token.

    `kind` is one of unauthorized, forbidden, rate_limited, rejected (other 4xx),
    server_error, timeout, connection, malformed; `status` the HTTP status if one came back;
    `retry_after` the seconds Trustly asked us to wait (429/503 with Retry-After).
    """

    def __init__(self, kind: str, message: str, *, status: int | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        self.message = message

    def describe(self) -> str:
        """One line for the EGM screen and the state dump, e.g. `HTTP 503 (server_error)`."""
        where = f"HTTP {self.status}" if self.status is not None else self.kind
        return f"{where}: {self.message}"


class _Channel:
    """One way to Trustly's QR Code API: a transport, the link's URL, login and timeouts.

    A call goes straight through the transport (`exchange_through`), without an
    `httpx.Client`: the URL is fixed, the login is one header made once, redirects are never
    followed and Trustly sets no cookies.
    """

    def __init__(self, link: TrustlyLink, transport: httpx.BaseTransport) -> None:
        self.transport = transport
        self._url = link.base_url.rstrip("/") + TOKEN_PATH
        login = base64.b64encode(f"{link.access_id}:{link.access_key}".encode()).decode()
        self._headers = {"Authorization": f"Basic {login}", "User-Agent": USER_AGENT}
        self._timeout = httpx.Timeout(link.read_timeout_s,
                                      connect=link.connect_timeout_s).as_dict()

    def post(self, body: dict[str, str]) -> httpx.Response:
        """POST `body` as JSON and read the whole answer."""
        return exchange_through(self.transport, httpx.Request(
            "POST", self._url, json=body, headers=self._headers,
            extensions={"timeout": self._timeout}))


class ClientPool:
    """Pooled channels to Trustly, one per (process, link, transport), made on first use.

    Building a network transport builds an SSL context, which parses the CA bundle: about
    20 ms of CPU, most of what a QR acquisition used to cost. A pooled transport also keeps
    its TCP connection alive between calls. Channels are keyed by process id so a gunicorn
    worker never reuses a connection its parent opened, and by the transport object itself
    (tests swap in scripted transports) so a swap is never served by a stale channel.
    """

    MAX_CLIENTS = 8  # links x transports in one process; more only happens in test suites

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels: dict[tuple[int, TrustlyLink, int], tuple[Any, _Channel]] = {}

    def client(self, link: TrustlyLink, transport: Any = None) -> _Channel:
        """The pooled channel for `link` over `transport` (None: the network)."""
        key = (os.getpid(), link, id(transport))
        found = self._channels.get(key)
        if found is not None and found[0] is transport:
            return found[1]
        with self._lock:
            found = self._channels.get(key)
            if found is not None and found[0] is transport:
                return found[1]
            if len(self._channels) >= self.MAX_CLIENTS:  # dropped, not closed: maybe in use
                self._channels.pop(next(iter(self._channels)))
            made = _Channel(link, transport if transport is not None else StdlibTransport())
            self._channels[key] = (transport, made)
            return made


POOL = ClientPool()
# A kept-alive connection the server closed while idle fails like this before any answer.
_STALE_CONNECTION = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def request_qr_token(
    link: TrustlyLink, egm_id: str, *, location_id: str | None = None, transport: Any = None,
) -> AcquiredQr:
    """Ask Trustly for a QR token for one EGM (Basic accessId/accessKey, JSON body).

    `transport` (an httpx transport) reaches an in-process Trustly in tests and the embedded
    harness; without it the call goes over the network to `link.base_url`. The call is tried
    a second time only when a pooled connection turns out to be dead (an unused token just
    expires at Trustly, so a duplicate request costs nothing).
    """
    body: dict[str, str] = {"merchantId": link.merchant_id, "egmId": egm_id}
    if location_id:
        body["locationId"] = location_id
    channel = POOL.client(link, transport)
    try:
        try:
            response = channel.post(body)
        except _STALE_CONNECTION:
            response = channel.post(body)
    except httpx.TimeoutException as exc:
        raise TrustlyUnavailable("timeout", f"no answer in time ({type(exc).__name__})") from exc
    except (httpx.HTTPError, ConnectionError) as exc:  # in-process drops raise ConnectionError
        raise TrustlyUnavailable("connection", f"cannot reach Trustly ({exc})") from exc
    if response.status_code != 200:
        raise _refusal(response)
    return parse_token_response(response)


_KINDS = {401: "unauthorized", 403: "forbidden", 429: "rate_limited"}


def _refusal(response: httpx.Response) -> TrustlyUnavailable:
    status = response.status_code
    kind = _KINDS.get(status, "server_error" if status >= 500 else "rejected")
    return TrustlyUnavailable(kind, _error_message(response), status=status,
                              retry_after=parse_retry_after(response.headers.get("Retry-After")))


def _error_message(response: httpx.Response) -> str:
    """Trustly's own message (`errors[0].message`) when the body has one, else the reason."""
    try:
        item = response.json()["errors"][0]
        return f"{item.get('reason') or item.get('code')}: {item['message']}"[:300]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return response.reason_phrase or "error"


def parse_retry_after(value: str | None) -> int | None:
    """Seconds from a Retry-After header (delta-seconds form); None if absent or unusable."""
    if value is None or not value.strip().isdigit():
        return None
    return min(int(value.strip()), MAX_RETRY_AFTER_S)


def parse_token_response(response: httpx.Response) -> AcquiredQr:
    """Check the 200 body against the contract: `url`, `token`, `expiresAt`."""
    try:
        body = response.json()
    except ValueError as exc:
        raise _malformed("the body is not JSON") from exc
    if not isinstance(body, dict):
        raise _malformed("the body is not a JSON object")
    url, token = body.get("url"), body.get("token")
    if not isinstance(url, str) or not _usable_url(url):
        raise _malformed("url is missing or not a printable ASCII string of usable length")
    if urlsplit(url).scheme not in ("http", "https"):
        raise _malformed("url is not an http(s) URL")
    if not isinstance(token, str) or not token:
        raise _malformed("token is missing")
    return AcquiredQr(url=url, token=token, expires_at=parse_expires_at(body.get("expiresAt")),
                      qr_token_id=token_id(url, token))


def _usable_url(url: str) -> bool:
    return url.isascii() and url.isprintable() and 0 < len(url) <= MAX_URL_BYTES


def parse_expires_at(value: Any) -> datetime:
    """`expiresAt` as ISO-8601 (the default) or epoch milliseconds (Trustly's other format)."""
    try:
        if isinstance(value, str):
            return parse_instant(value)
        if isinstance(value, int | float) and not isinstance(value, bool) \
                and math.isfinite(value):
            return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise _malformed(f"expiresAt {value!r} is not an instant") from exc
    raise _malformed("expiresAt is missing or neither ISO-8601 nor epoch milliseconds")


def token_id(url: str, token: str) -> str:
    """The token's id: the code that ends the scan url, else the JWT's `jti`.

    The url's code is what a phone presents when it scans, so it is what the CMS must have
    recorded as displayed; the `jti` (read, not verified: only Trustly can verify) covers a
    Trustly whose urls carry the code elsewhere.
    """
    code = urlsplit(url).path.rstrip("/").rpartition("/")[2]
    if not code:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise _malformed("the url names no code and the token is not a JWT") from exc
        code = str(claims.get("jti") or "")
    if not code or len(code) > MAX_TOKEN_ID_CHARS:
        raise _malformed("no usable token id in url or token")
    return code


def _malformed(message: str) -> TrustlyUnavailable:
    return TrustlyUnavailable("malformed", message, status=200)
