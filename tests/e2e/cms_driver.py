"""Drive a running sim_cms over HTTP only: a TPAS token, displayed QRs, limits, reads.

What an outside tester can do against a real server, so tests built on it never reach into
the server's database. Every call asserts its status and shows the body when it is wrong.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from simkit.clock import format_instant, parse_instant
from simkit.tls import tls_context

TPAS = ("tpas-client", "tpas-secret")
DESK = ("casino-desk", "casino-desk-secret")  # the demo client that may change limits
TIMEOUT_S = 30.0
# Drop a pooled connection after 1 s idle: gunicorn closes idle keep-alive connections after
# 2 s (`--keep-alive`), and a request sent on one just as the server closes it is reset.
KEEP_ALIVE = httpx.Limits(keepalive_expiry=1.0)


def _ok(response: httpx.Response, *statuses: int) -> Any:
    assert response.status_code in statuses, (response.status_code, response.text)
    return response.json()


class CmsDriver:
    """One sim_cms (base URL and admin token) behind one keep-alive client; close() when done.

    One client for every call: building an httpx client costs tens of milliseconds (its TLS
    context), more than a call to a local server. Not for use from several threads at once.
    """

    def __init__(self, base: str, admin_token: str) -> None:
        self.base = base
        self.admin_token = admin_token
        self._client = httpx.Client(base_url=base, timeout=TIMEOUT_S, limits=KEEP_ALIVE,
                                    verify=tls_context())

    def close(self) -> None:
        """Close the connection."""
        self._client.close()

    def _call(self, method: str, path: str, *, admin: bool = False, token: str | None = None,
              **kwargs: Any) -> httpx.Response:
        bearer = self.admin_token if admin else token
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        return self._client.request(method, path, headers=headers, **kwargs)

    def token(self, client: tuple[str, str] = TPAS) -> str:
        """A fresh access token of `client` (default: TPAS's; client credentials)."""
        response = self._client.post("/cws/v1/oauth/token", auth=client,
                                     data={"grant_type": "client_credentials"})
        return str(_ok(response, 200)["access_token"])

    def now(self) -> datetime:
        """The CMS's own now (a controllable clock stays frozen unless moved)."""
        return parse_instant(_ok(self._call("GET", "/_sim/clock", admin=True), 200)["now"])

    def show_qr(self, egm_id: str, code: str, expires_at: datetime) -> str:
        """Put a QR on the EGM's screen through the control API; returns its qrTokenId."""
        body = {"url": f"https://trustly.invalid/scan/{code}", "qrTokenId": code,
                "expiresAt": format_instant(expires_at)}
        response = self._call("POST", f"/_sim/egms/{egm_id}/qr-display", admin=True, json=body)
        return str(_ok(response, 201)["qrTokenId"])

    def set_limit(self, ubai: str, daily_limit: int) -> dict[str, Any]:
        """PUT the UBAI's daily limit as the casino's desk (TPAS may not); the limit view."""
        response = self._call("PUT", f"/cws/v1/limits/{ubai}", token=self.token(DESK),
                              json={"dailyLimit": daily_limit})
        view: dict[str, Any] = _ok(response, 200, 201)
        return view

    def limit(self, token: str, ubai: str) -> dict[str, Any]:
        """The UBAI's limit view (`usedToday`, `remainingToday`...)."""
        view: dict[str, Any] = _ok(self._call("GET", f"/cws/v1/limits/{ubai}", token=token), 200)
        return view

    def meter(self, token: str, egm_id: str) -> int:
        """The EGM's credit meter as the CWS API reports it."""
        return int(_ok(self._call("GET", f"/cws/v1/egms/{egm_id}", token=token), 200)
                   ["creditMeter"])

    def fund(self, token: str, body: dict[str, Any]) -> httpx.Response:
        """POST one funding and return the answer as it came."""
        return self._call("POST", "/cws/v1/fundings", token=token, json=body)

    def funding_status(self, token: str, transaction_id: str) -> dict[str, Any]:
        """The status inquiry for a transactionId (404 FUNDING_NOT_FOUND is returned as is)."""
        response = self._call("GET", f"/cws/v1/fundings/{transaction_id}", token=token)
        status: dict[str, Any] = _ok(response, 200, 404)
        return status

    def ledger(self) -> dict[str, Any]:
        """The ledger summary of the state dump: transactions, entries, total, balanced."""
        summary: dict[str, Any] = _ok(self._call("GET", "/_sim/state", admin=True), 200)["ledger"]
        return summary
