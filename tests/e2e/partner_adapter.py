"""A partner adapter: makes `tests.e2e.partner_cms_app`'s API look like a CmsAdapter to TPAS.

It is what docs/partner-adapters.md tells a partner to write, configured with
`adapter = "tests.e2e.partner_adapter:PartnerAdapter"` and the partner's paths:

    paths = { fundings = "/api/credits", funding_status = "/api/credits/{transactionId}",
              limits = "/api/players/{ubai}/allowance" }
"""

from __future__ import annotations

from typing import Any

import httpx

from sim_trustly.cms_client.http_client import CmsAuth, make_http_client
from sim_trustly.cms_client.partner_profiles import CmsProfile
from sim_trustly.cms_client.protocol import FundingCall, FundingResult, LimitResult

# The partner's decline reasons in the reference API's words, which TPAS reports.
REASON_CODES = {"UNKNOWN_MACHINE": "EGM_NOT_FOUND", "MACHINE_DOWN": "EGM_OFFLINE",
                "OVER_ALLOWANCE": "DAILY_LIMIT_EXCEEDED"}


class PartnerAdapter:
    """The partner's credits API behind the CmsAdapter protocol."""

    def __init__(self, profile: CmsProfile, transport: httpx.BaseTransport | None) -> None:
        self.profile = profile
        self._client = make_http_client(profile, transport)  # base URL, timeouts, transport
        self._auth = CmsAuth(profile, self._client)  # the profile's API key header

    def get_limit(self, ubai: str) -> LimitResult:
        """The player's allowance left today."""
        try:
            response = self._client.get(self.profile.paths.limit(ubai),
                                        headers=self._auth.headers())
        except httpx.RequestError as exc:
            return LimitResult("UNKNOWN", detail=repr(exc))
        left = _body(response).get("left_cents") if response.status_code == 200 else None
        if not isinstance(left, int):
            return LimitResult("UNKNOWN", detail=f"{response.status_code}")
        return LimitResult("OK", remaining=left)

    def post_funding(self, call: FundingCall) -> FundingResult:
        """Credit the machine; the partner only knows US cents, so refuse anything else here."""
        if call.currency != "USD":
            return FundingResult("REJECTED", code="INVALID_AMOUNT", detail="USD only")
        body = {"ref": call.transaction_id, "machine": call.egm_id, "cents": call.amount,
                "player_token": call.ubai}
        try:
            response = self._client.post(self.profile.paths.fundings, json=body,
                                         headers=self._auth.headers())
        except httpx.RequestError as exc:  # timeout or dropped: it may have been credited
            return FundingResult("UNKNOWN", detail=repr(exc))
        return _result(response)

    def get_funding(self, transaction_id: str) -> FundingResult:
        """What the partner decided for this ref; NOT_FOUND means it never saw it."""
        try:
            response = self._client.get(self.profile.paths.status(transaction_id),
                                        headers=self._auth.headers())
        except httpx.RequestError as exc:
            return FundingResult("UNKNOWN", detail=repr(exc))
        if response.status_code == 404 and _body(response).get("error") == "unknown ref":
            return FundingResult("NOT_FOUND", http_status=404)
        return _result(response)


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _result(response: httpx.Response) -> FundingResult:
    status, body = response.status_code, _body(response)
    if status == 200 and body.get("result") == "credited":
        return FundingResult("APPLIED", http_status=200, credit_meter=body.get("balance_cents"),
                             detail="duplicate" if body.get("duplicate") else "")
    if status == 200 and body.get("result") == "declined":
        reason = str(body.get("reason"))
        return FundingResult("REJECTED", http_status=200,
                             code=REASON_CODES.get(reason, f"PARTNER_{reason}"), detail=reason)
    if status == 409 and body.get("error") == "ref reused":
        return FundingResult("REJECTED", http_status=409, code="IDEMPOTENCY_KEY_REUSED")
    if status == 400:
        return FundingResult("REJECTED", http_status=400, code="INVALID_REQUEST",
                             detail=str(body.get("error", "")))
    return FundingResult("UNKNOWN", http_status=status, detail=f"{status} {body}")
