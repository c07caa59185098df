"""Trustly's QR Code API as a CMS calls it, and whether a Trustly answers at all.

Certify's scan scenarios judge the harness's Trustly's token endpoint the way a CMS meets it
(good and bad credentials, missing fields, another merchant's id), so each call takes the
body and the Basic credentials it is told and returns the answer as it came. The microsite's
JSON API is the phone's (`harness.clients.phone`); the control API is `harness.clients.control`.

Built with a merchant (`TrustlyApi(client, merchant=...)`), it calls as that merchant unless
told otherwise: the pytest plugin hands such a one to partners' tests as `scanpay_trustly`,
whose `get`/`post`/`request` keep the calls of the raw client that fixture used to be.
"""

from __future__ import annotations

from typing import Any, Protocol

from harness.clients.http import Client, Response, get_once

QR_TOKEN_PATH = "/auth-service/api/oauth2/qrcode/token"  # noqa: S105 - a path


class Merchant(Protocol):
    """Who a CMS is to Trustly: its merchant id and its QR Code API credentials."""

    @property
    def merchant_id(self) -> str: ...

    @property
    def access_id(self) -> str: ...

    @property
    def access_key(self) -> str: ...


class TrustlyApi:
    """Trustly's QR Code API through one client (base URL: the Trustly under test)."""

    def __init__(self, client: Client, merchant: Merchant | None = None) -> None:
        self.client = client
        self.merchant = merchant

    def __repr__(self) -> str:  # never print the access key
        who = f", merchant {self.merchant.merchant_id!r}" if self.merchant else ""
        return f"TrustlyApi({str(self.client.base_url)!r}{who})"

    @property
    def base_url(self) -> str:
        """The Trustly this client calls."""
        return str(self.client.base_url)

    @property
    def merchant_auth(self) -> tuple[str, str] | None:
        """The merchant's Basic credentials (`accessId`, `accessKey`), if built with one."""
        if self.merchant is None:
            return None
        return (self.merchant.access_id, self.merchant.access_key)

    def request_qr_token(self, body: Any, *, auth: tuple[str, str] | None = None) -> Response:
        """`POST` the QR Code API's token endpoint with `body` as JSON and `auth` as Basic
        credentials (any pair: a scenario may send a stranger's on purpose); without `auth`,
        the merchant's this client was built with."""
        return self.client.post(QR_TOKEN_PATH, json=body, auth=auth or self._merchant_auth())

    def request(self, method: str, path: str, **kwargs: Any) -> Response:
        """Any call to this Trustly (a path, or an absolute url), with the merchant's Basic
        credentials unless `auth` is given; the answer as it came."""
        if "auth" not in kwargs and self.merchant is not None:
            kwargs["auth"] = self.merchant_auth
        return self.client.request(method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Response:
        """`GET path` as `request` sends it."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Response:
        """`POST path` as `request` sends it (`json=`, `content=`, `headers=` as usual)."""
        return self.request("POST", path, **kwargs)

    def _merchant_auth(self) -> tuple[str, str]:
        auth = self.merchant_auth
        if auth is None:
            raise ValueError("this TrustlyApi was built without a merchant: pass `auth`")
        return auth

    @staticmethod
    def answers_at(base_url: str, timeout_s: float) -> Response:
        """`GET <base_url>/openapi.json` once: any answer means the Trustly is up (the
        library's error when none came)."""
        return get_once(base_url.rstrip("/") + "/openapi.json", timeout_s)
