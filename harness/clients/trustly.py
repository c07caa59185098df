"""Trustly's QR Code API as a CMS calls it, and whether a Trustly answers at all.

Certify's scan scenarios judge the harness's Trustly's token endpoint the way a CMS meets it
(good and bad credentials, missing fields, another merchant's id), so each call takes the
body and the Basic credentials it is told and returns the answer as it came. The microsite's
JSON API is the phone's (`harness.clients.phone`); the control API is `harness.clients.control`.
"""

from __future__ import annotations

from typing import Any

from harness.clients.http import Client, Response, get_once

QR_TOKEN_PATH = "/auth-service/api/oauth2/qrcode/token"  # noqa: S105 - a path


class TrustlyApi:
    """Trustly's QR Code API through one client (base URL: the Trustly under test)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def request_qr_token(self, body: Any, *, auth: tuple[str, str]) -> Response:
        """`POST` the QR Code API's token endpoint with `body` as JSON and `auth` as Basic
        credentials (any pair: a scenario may send a stranger's on purpose)."""
        return self.client.post(QR_TOKEN_PATH, json=body, auth=auth)

    @staticmethod
    def answers_at(base_url: str, timeout_s: float) -> Response:
        """`GET <base_url>/openapi.json` once: any answer means the Trustly is up (the
        library's error when none came)."""
        return get_once(base_url.rstrip("/") + "/openapi.json", timeout_s)
