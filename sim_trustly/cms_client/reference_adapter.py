"""The reference CMS API adapter (sim_cms's `/cws/v1`), the default of every partner profile.

How answers become outcomes (the rule is "REJECTED only when the CMS has decided"):

- `POST fundings`: 200/201 with `status: APPLIED` -> APPLIED (also a replay). A problem whose
  `code` is a stored decision (`DECIDED_CODES`, e.g. 503 EGM_OFFLINE) or a malformed-request
  refusal (`REFUSED_CODES`: nothing was stored, and the same body can never succeed) ->
  REJECTED with that code. Everything else -> UNKNOWN: 409 FUNDING_IN_PROGRESS, a 5xx
  without a decided code (503 FAULT_INJECTED, 502 from a proxy), a 401 that survived one
  token refresh, timeouts, dropped connections, bodies that cannot be read.
- `GET fundings/{id}`: 200 -> APPLIED or REJECTED as the status document says; 404
  FUNDING_NOT_FOUND -> NOT_FOUND; anything else -> UNKNOWN.
- `GET limits/{ubai}`: 200 -> OK with `remainingToday`; anything else -> UNKNOWN.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from sim_trustly.cms_client.http_client import (
    USER_AGENT,
    CmsAuth,
    CmsUnavailable,
    make_http_client,
    make_transport,
    problem_code,
    profile_timeout,
)
from sim_trustly.cms_client.partner_profiles import CmsProfile
from sim_trustly.cms_client.protocol import FundingCall, FundingResult, LimitResult
from simkit.clock import Clock
from simkit.http_transport import exchange_through

log = logging.getLogger(__name__)

# Decisions the reference CMS stores under the transactionId (sim_cms.ledger).
DECIDED_CODES = frozenset({
    "EGM_NOT_FOUND", "EGM_OFFLINE", "EGM_BUSY", "EGM_DOOR_OPEN", "EGM_TILT",
    "INVALID_AMOUNT", "QR_TOKEN_MISMATCH", "QR_TOKEN_USED", "QR_TOKEN_EXPIRED",
    "CREDIT_LIMIT_EXCEEDED", "DAILY_LIMIT_EXCEEDED",
    "IDEMPOTENCY_KEY_REUSED",
})
# Malformed requests: refused before anything was decided, and refused again if repeated.
REFUSED_CODES = frozenset({
    "INVALID_REQUEST", "VALIDATION_ERROR", "PAYLOAD_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE",
})
_FAILURES = (httpx.RequestError, CmsUnavailable)


class ReferenceAdapter:
    """Speaks sim_cms's API for one profile: one keep-alive client, one cached token."""

    def __init__(self, profile: CmsProfile, transport: httpx.BaseTransport | None = None, *,
                 clock: Clock | None = None) -> None:
        self.profile = profile
        self._transport = make_transport(transport)
        self._client = make_http_client(profile, transport, own_transport=self._transport)
        self._auth = CmsAuth(profile, self._client, clock)
        self._base = profile.base_url.rstrip("/")
        self._timeout = profile_timeout(profile).as_dict()

    def close(self) -> None:
        """Close the HTTP client and its pooled connections."""
        self._client.close()

    def get_limit(self, ubai: str) -> LimitResult:
        """Read what remains of the UBAI's daily limit (UNKNOWN rather than raise)."""
        try:
            response = self._send("GET", self.profile.paths.limit(ubai))
        except _FAILURES as exc:
            return LimitResult("UNKNOWN", detail=_describe(exc))
        return limit_result(response)

    def post_funding(self, call: FundingCall) -> FundingResult:
        """Send the funding; the answer's classification is in the module docstring."""
        try:
            response = self._send("POST", self.profile.paths.fundings, json=call.wire())
        except _FAILURES as exc:
            return _logged(call.transaction_id, _unknown(_describe(exc)))
        return _logged(call.transaction_id, funding_result(response))

    def get_funding(self, transaction_id: str) -> FundingResult:
        """Ask what was decided for `transaction_id`."""
        try:
            response = self._send("GET", self.profile.paths.status(transaction_id))
        except _FAILURES as exc:
            return _logged(transaction_id, _unknown(_describe(exc)))
        return _logged(transaction_id, status_result(response))

    def _send(self, method: str, path: str, json: Any = None) -> httpx.Response:
        """One request; after a 401 for a stale token, one more with a fresh token."""
        headers = self._auth.headers()
        response = self._exchange(method, path, headers, json)
        if self._auth.retry_after_refresh(response, headers):
            response = self._exchange(method, path, self._auth.headers(), json)
        return response

    def _exchange(self, method: str, path: str, headers: dict[str, str],
                  json: Any) -> httpx.Response:
        """Send one request straight through the transport and read the whole answer
        (`exchange_through`: no `httpx.Client` around it). This adapter needs none of what a
        client adds: the URL is the profile's base plus a path, the headers are ours,
        redirects are never followed and the CMS sets no cookies. Timeouts go on the request
        as the client would put them."""
        return exchange_through(self._transport, httpx.Request(
            method, self._base + path, json=json, headers={"User-Agent": USER_AGENT, **headers},
            extensions={"timeout": self._timeout}))


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _unknown(detail: str, status: int | None = None, code: str | None = None) -> FundingResult:
    return FundingResult("UNKNOWN", http_status=status, code=code, detail=detail)


def _logged(transaction_id: str, result: FundingResult) -> FundingResult:
    """Log what TPAS will have to inquire about (never headers or bodies: no secrets)."""
    if result.outcome == "UNKNOWN":
        log.warning("CMS outcome of %s unknown: %s", transaction_id, result.detail)
    return result


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def funding_result(response: httpx.Response) -> FundingResult:
    """Classify the answer to `POST fundings`."""
    status = response.status_code
    body = _json_object(response)
    replayed = response.headers.get("Idempotent-Replayed") == "true"
    if status in (200, 201):
        if body is None or body.get("status") != "APPLIED":
            return _unknown(f"{status} without a readable APPLIED body", status)
        return FundingResult("APPLIED", http_status=status,
                             credit_meter=_int_or_none(body.get("creditMeter")),
                             detail="replayed" if replayed else "")
    code = problem_code(response)
    if code in DECIDED_CODES or (code in REFUSED_CODES and status < 500):
        detail = str(body.get("detail", "")) if body else ""
        return FundingResult("REJECTED", http_status=status, code=code, detail=detail)
    return _unknown(f"{status} {code or 'without a decided code'}", status, code)


def status_result(response: httpx.Response) -> FundingResult:
    """Classify the answer to `GET fundings/{transactionId}`."""
    status = response.status_code
    code = problem_code(response)
    if status == 404 and code == "FUNDING_NOT_FOUND":
        return FundingResult("NOT_FOUND", http_status=404, code=code)
    body = _json_object(response) if status == 200 else None
    if body is None or body.get("status") not in ("APPLIED", "REJECTED"):
        return _unknown(f"{status} {code or 'without a status document'}", status, code)
    decided_status = _int_or_none(body.get("httpStatus")) or status
    if body["status"] == "REJECTED":
        stored_code = body.get("code")
        return FundingResult("REJECTED", http_status=decided_status,
                             code=stored_code if isinstance(stored_code, str) else None)
    original = body.get("response")
    meter = _int_or_none(original.get("creditMeter")) if isinstance(original, dict) else None
    return FundingResult("APPLIED", http_status=decided_status, credit_meter=meter)


def limit_result(response: httpx.Response) -> LimitResult:
    """Classify the answer to `GET limits/{ubai}`."""
    body = _json_object(response) if response.status_code == 200 else None
    remaining = _int_or_none(body.get("remainingToday")) if body else None
    if body is None or remaining is None:
        code = problem_code(response) or "without a limit document"
        return LimitResult("UNKNOWN", detail=f"{response.status_code} {code}")
    return LimitResult("OK", remaining=remaining,
                       daily_limit=_int_or_none(body.get("dailyLimit")))
