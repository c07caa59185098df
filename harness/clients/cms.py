"""The CMS as the harness calls it: as TPAS (fundings, limits) and as the EGM (meter, QR).

The one client every part of the harness uses for a CMS: certify's scenarios and preflight,
the pytest plugin (its `scanpay_cms` fixture is this class, and its flows read meters and
acquire QRs through it), `scanpay flow` (on sim_cms's paths, `ReferenceCms`), and the checks
that a CMS answers at all before `scanpay load` or a browser starts (`answers_at`,
`egm_screen_at`).

Authentication follows the target's partner profile (OAuth2 client credentials with token
refresh, Basic, or an API key), and the paths its `paths` table names, so the calls are the
ones TPAS itself would make. Changing a daily limit is not TPAS's to do: those calls use the
target's limits credentials (`Target.limits_auth`), as the casino's staff would. Calls return
the raw `httpx.Response`: scenarios judge status codes, bodies and headers themselves.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from harness.clients.http import get_once
from harness.target_config import EgmPaths
from sim_trustly.cms_client.partner_profiles import DEFAULT_CMS_PROFILE, AuthConfig, CmsProfile

LIMIT_CHANGES = frozenset({"PUT", "PATCH", "DELETE"})
JSON_HEADERS = {"Content-Type": "application/json"}


def encode_json(body: Any) -> bytes:
    """JSON text of any value, NaN and infinities written as such (strict parsers refuse them,
    which is what the malformed bodies of `harness.plugin.strategies` are for)."""
    return json.dumps(body, allow_nan=True).encode("utf-8")


class CmsTarget(Protocol):
    """What the client must know of a CMS: TPAS's auth and paths, the EGM's paths, and who
    changes daily limits. A `harness.targets.Target` is one; so is `ReferenceCms`."""

    @property
    def cms_profile(self) -> CmsProfile: ...

    @property
    def egm_paths(self) -> EgmPaths: ...

    @property
    def limits_auth(self) -> AuthConfig: ...


@dataclass(frozen=True)
class ReferenceCms:
    """A CMS on sim_cms's own paths, called with one OAuth2 client (what `scanpay flow` drives,
    by base URL rather than through a certify target)."""

    cms_profile: CmsProfile
    egm_paths: EgmPaths = field(default_factory=EgmPaths)

    @property
    def limits_auth(self) -> AuthConfig:
        """The same client: a flow never changes a daily limit."""
        return self.cms_profile.auth

    @classmethod
    def with_client(cls, client_id: str, client_secret: str) -> ReferenceCms:
        """sim_cms's paths with this OAuth2 client's credentials. The profile's base URL is
        never used: the httpx client the `CmsApi` is given carries the address."""
        auth = AuthConfig(kind="oauth2_client_credentials", client_id=client_id,
                          client_secret=client_secret)
        return cls(replace(DEFAULT_CMS_PROFILE, name="scanpay flow", auth=auth))


@dataclass(frozen=True)
class ShownQr:
    """The QR an EGM shows: its url, the token id a funding names, expiry if known."""

    url: str
    qr_token_id: str
    expires_at: str | None = None
    rotates_at: str | None = None


def token_id_of(url: str) -> str:
    """The QR's code: the last path segment of its url (what Trustly's scan url ends in)."""
    return urlsplit(url).path.rstrip("/").rpartition("/")[2]


def decode_qr_png(png: bytes) -> list[str]:
    """Every QR code's text in a PNG (zxing-cpp, a dependency of the package)."""
    import zxingcpp  # imported here: only the QR scenarios pay its import time
    from PIL import Image

    return [hit.text for hit in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


class CmsApi:
    """One authenticated session with the CMS (thread-safe: concurrent fundings share it)."""

    def __init__(self, target: CmsTarget, client: httpx.Client,
                 egm_client: httpx.Client | None = None) -> None:
        """`client` speaks as TPAS; `egm_client` (default: the same) as the EGM, so the
        observed sequence says who is calling."""
        self.target = target
        self.profile = target.cms_profile
        self.paths = target.cms_profile.paths
        self.egm_paths = target.egm_paths
        self.client = client
        self.egm_client = egm_client or client
        self._tokens: dict[AuthConfig, str] = {}
        self._limits_path = re.compile(
            re.escape(self.paths.limits).replace(re.escape("{ubai}"), "[^/]*"))
        self._lock = threading.Lock()

    # --- authentication -----------------------------------------------------------------

    def fetch_token(self, auth: AuthConfig | None = None) -> httpx.Response:
        """`POST <token path>` with an OAuth2 client's credentials (default: TPAS's)."""
        auth = auth or self.profile.auth
        return self.client.post(self.paths.token, data={"grant_type": "client_credentials"},
                                auth=(auth.client_id, auth.client_secret))

    def token(self, *, fresh: bool = False, auth: AuthConfig | None = None) -> str:
        """The current access token of `auth` (default: TPAS's), fetched when there is none
        (or `fresh`)."""
        auth = auth or self.profile.auth
        with self._lock:
            if auth not in self._tokens or fresh:
                response = self.fetch_token(auth)
                response.raise_for_status()
                self._tokens[auth] = str(response.json()["access_token"])
            return self._tokens[auth]

    def auth_headers(self, *, fresh: bool = False,
                     auth: AuthConfig | None = None) -> dict[str, str]:
        """The credentials of one call, as the auth kind sends them (default: TPAS's)."""
        auth = auth or self.profile.auth
        if auth.kind == "oauth2_client_credentials":
            return {"Authorization": f"Bearer {self.token(fresh=fresh, auth=auth)}"}
        if auth.kind == "api_key":
            return {auth.header: auth.key}
        pair = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}

    def auth_for(self, method: str, path: str) -> AuthConfig:
        """Who makes a call: the target's limits credentials for a change of a daily limit
        (PUT, PATCH, DELETE on the limits path), TPAS's for everything else."""
        changes = method.upper() in LIMIT_CHANGES
        if changes and self._limits_path.fullmatch(path.partition("?")[0]):
            return self.target.limits_auth
        return self.profile.auth

    @property
    def uses_oauth(self) -> bool:
        """Whether the CMS hands out expiring access tokens (OAuth2 client credentials)."""
        return self.profile.auth.kind == "oauth2_client_credentials"

    # --- reachability (no session, no credentials) -----------------------------------------

    @staticmethod
    def answers_at(cms_url: str, timeout_s: float) -> httpx.Response:
        """`GET <cms_url>/openapi.json` once: any answer means the CMS is up (the library's
        error when none came)."""
        return get_once(cms_url.rstrip("/") + "/openapi.json", timeout_s)

    @staticmethod
    def egm_screen_at(cms_url: str, egm_id: str, timeout_s: float) -> httpx.Response:
        """`GET <cms_url>/egm/<id>` once: the EGM screen a browser would open (checked before
        a browser is started)."""
        return get_once(f"{cms_url.rstrip('/')}/egm/{egm_id}", timeout_s)

    def call(self, method: str, path: str, *, refresh: bool = True, as_egm: bool = False,
             auth: AuthConfig | None = None, **kwargs: Any) -> httpx.Response:
        """One authenticated call (as `auth`, default TPAS); on a 401 the token is fetched
        again and the call repeated once (as TPAS does), unless `refresh` is False."""
        client = self.egm_client if as_egm else self.client
        auth = auth or self.auth_for(method, path)
        headers = {**kwargs.pop("headers", {}), **self.auth_headers(auth=auth)}
        response = client.request(method, path, headers=headers, **kwargs)
        if response.status_code == 401 and refresh and auth.kind == "oauth2_client_credentials":
            headers.update(self.auth_headers(fresh=True, auth=auth))
            response = client.request(method, path, headers=headers, **kwargs)
        return response

    # --- as TPAS --------------------------------------------------------------------------

    def post_funding(self, body: Any, **kwargs: Any) -> httpx.Response:
        """`POST /cws/v1/fundings` with any JSON value as `body` (or the `json=`/`content=`
        given instead)."""
        if "content" in kwargs or "json" in kwargs:
            return self.call("POST", self.paths.fundings, **kwargs)
        headers = {**JSON_HEADERS, **kwargs.pop("headers", {})}
        return self.call("POST", self.paths.fundings, content=encode_json(body),
                         headers=headers, **kwargs)

    def send_raw(self, method: str, path: str, *, auth_header: str | None = None,
                 **kwargs: Any) -> httpx.Response:
        """One call as TPAS with exactly the `Authorization` header given, none when None,
        and no token refresh: what a scenario sends when it means to send bad, expired or
        missing credentials."""
        headers = dict(kwargs.pop("headers", {}))
        if auth_header is not None:
            headers["Authorization"] = auth_header
        return self.client.request(method, path, headers=headers, **kwargs)

    def post_funding_raw(self, body: Any, auth_header: str | None = None) -> httpx.Response:
        """`POST /cws/v1/fundings` with `body` as JSON and only the `Authorization` header
        given (see `send_raw`)."""
        return self.send_raw("POST", self.paths.fundings, auth_header=auth_header, json=body)

    def read_egm_raw(self, egm_id: str, auth_header: str | None = None) -> httpx.Response:
        """`GET` the EGM's read path as TPAS with only the `Authorization` header given (see
        `send_raw`): the preflight's first call (no credentials: does the CMS answer at all),
        and an expired token's refusal."""
        return self.send_raw("GET", self.egm_paths.of(self.egm_paths.read, egm_id),
                             auth_header=auth_header)

    def post_raw(self, path: str, content: bytes,
                 content_type: str = "application/json") -> httpx.Response:
        """POST bytes as they are, as TPAS (malformed JSON, wrong content types)."""
        return self.call("POST", path, content=content, headers={"Content-Type": content_type})

    def get_funding(self, transaction_id: str) -> httpx.Response:
        """The status inquiry: `GET /cws/v1/fundings/{transactionId}`."""
        return self.call("GET", self.paths.status(transaction_id))

    def limit(self, method: str, ubai: str, body: Any = None) -> httpx.Response:
        """`GET|PUT|PATCH|DELETE /cws/v1/limits/{ubai}`: reads as TPAS, changes with the
        target's limits credentials."""
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs = {"content": encode_json(body), "headers": dict(JSON_HEADERS)}
        return self.call(method, self.paths.limit(ubai), **kwargs)

    def get_limit(self, ubai: str) -> httpx.Response:
        """The daily limit of a UBAI."""
        return self.limit("GET", ubai)

    def put_limit(self, ubai: str, body: Any) -> httpx.Response:
        """Set a UBAI's daily limit (any JSON value as the body), as the casino's staff."""
        return self.limit("PUT", ubai, body)

    def delete_limit(self, ubai: str) -> httpx.Response:
        """Remove a UBAI's limit (back to the casino's default), as the casino's staff."""
        return self.limit("DELETE", ubai)

    # --- as the EGM -----------------------------------------------------------------------

    def read_egm(self, egm_id: str, **kwargs: Any) -> httpx.Response:
        """`GET` the EGM's read path, as the EGM: the answer as it came."""
        return self.call("GET", self.egm_paths.of(self.egm_paths.read, egm_id), as_egm=True,
                         **kwargs)

    def ask_for_qr(self, egm_id: str, **kwargs: Any) -> httpx.Response:
        """`POST` the EGM's acquire_qr path (the CMS gets a fresh QR from Trustly and shows
        it), as the EGM: the answer as it came. Only for a CMS that names that path."""
        assert self.egm_paths.acquire_qr is not None
        return self.call("POST", self.egm_paths.of(self.egm_paths.acquire_qr, egm_id),
                         as_egm=True, **kwargs)

    def egm(self, egm_id: str) -> dict[str, Any]:
        """The EGM as its CMS reports it (`creditMeter`, `creditLimit`, `state`...)."""
        response = self.read_egm(egm_id)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def meter(self, egm_id: str) -> int:
        """The EGM's credit meter in minor units."""
        return int(self.egm(egm_id)["creditMeter"])

    def acquire_qr(self, egm_id: str) -> ShownQr:
        """A fresh QR on the EGM: asked for when the CMS can be asked, else read from the
        screen's image (decoded)."""
        if self.egm_paths.acquire_qr is not None:
            response = self.ask_for_qr(egm_id)
            response.raise_for_status()
            body = response.json()
            return ShownQr(str(body["url"]), str(body.get("qrTokenId") or
                                                 token_id_of(str(body["url"]))),
                           body.get("expiresAt"), body.get("rotatesAt"))
        return self.shown_qr(egm_id)

    def qr_png(self, egm_id: str) -> httpx.Response:
        """The EGM's QR image as the screen serves it."""
        assert self.egm_paths.qr_png is not None
        return self.egm_client.get(self.egm_paths.of(self.egm_paths.qr_png, egm_id))

    def shown_qr(self, egm_id: str) -> ShownQr:
        """What the EGM shows now, read from its QR image."""
        response = self.qr_png(egm_id)
        response.raise_for_status()
        texts = decode_qr_png(response.content)
        if len(texts) != 1:
            raise AssertionError(f"the QR image of {egm_id} holds {len(texts)} codes")
        return ShownQr(texts[0], token_id_of(texts[0]))
