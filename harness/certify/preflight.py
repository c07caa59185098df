"""The preflight: before any scenario, check that a run can mean something, or say why not.

A certification whose target cannot be reached, refuses the credentials, or gets its QR codes
from another Trustly does not fail one scenario: it fails all of them, each with a different
symptom (a raw `HTTPStatusError 404`, a `QR_CODE_USED`, a green payment against the wrong
Trustly). So `harness.targets.open_target` runs `run_preflight` once the target is up, and a
problem ends the run before any scenario with one paragraph that names the cause and the fix
(`PreflightError`; `scanpay certify` exits 2 with it). In order:

1. the CMS answers at all (connection refused, timeout, DNS);
2. its auth works: the OAuth2 token request succeeds (or Basic / API key are accepted), as
   TPAS and as the EGM; every EGM of the target answers its read with a `creditMeter`;
3. each hook the target declares answers in its documented shape (`reset` is never called:
   it would forget the CMS's data); then the clocks are aligned (`open_target`'s `align`);
4. the QR of the first EGM (asked for through `cms.egm.acquire_qr`, else read from the image
   `cms.egm.qr_png` if it shows one) is one the harness's own Trustly issued, else "your CMS
   got its QR from X; point its Trustly base URL at Y".

The fifth check, that the harness's own port is free, runs as the server is started
(`claim_port`, called by `open_target` for a partner target) so a busy port is diagnosed
instead of werkzeug's `sys.exit`.
"""

from __future__ import annotations

import errno
import json
import secrets
import socket
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from werkzeug.serving import get_sockaddr, select_address_family

from harness.clients import phone as phone_api
from harness.clients.cms import CmsApi, decode_qr_png, token_id_of
from harness.clients.control import ControlApi
from harness.clients.http import Client, HTTPError, Response, Timeout, TimeoutException
from harness.targets import Target, TargetError
from simkit.clock import format_instant, parse_instant, system_now

READ_S, CONNECT_S = 10.0, 5.0
TIMEOUT = Timeout(READ_S, connect=CONNECT_S)
EXCERPT = 200
_WHERE_CMS = {"partner": "cms.base_url in the target file",
              "local": "--cms-url (cms_url in a local target file)",
              "embedded": "the embedded sims (a scanpay-sim bug: please report it)"}


class PreflightError(TargetError):
    """The target or the harness cannot run; the message is the diagnosis (cause and fix)."""


def claim_port(host: str, port: int, who: str) -> socket.socket:
    """A socket listening on host:port for one of the harness's own servers.

    Bound here rather than by werkzeug, which prints to stderr and calls `sys.exit(1)` on a
    busy port; the caller hands the socket to the server (`make_server(fd=...)`).
    """
    family = select_address_family(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(get_sockaddr(host, port, family))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        busy = exc.errno == errno.EADDRINUSE
        cause = "is in use by another program" if busy else f"cannot be listened on ({exc})"
        raise PreflightError(
            f"Preflight failed: port {port} on {host} {cause}, and {who} must listen there. "
            "Stop the program that holds it (e.g. an earlier run still going, or `scanpay "
            "serve`), or choose another [trustly] port in the target file and point the "
            "CMS's Trustly base URL at it.") from None
    return sock


def _why(exc: HTTPError) -> str:
    if isinstance(exc, TimeoutException):
        return f"no answer within {READ_S:.0f} s"
    text = str(exc) or type(exc).__name__
    return "connection refused" if "refused" in text.lower() else text


def _excerpt(response: Response) -> str:
    text = " ".join(response.text.split())
    return f"HTTP {response.status_code}" + (f" {text[:EXCERPT]}" if text else "")


def _json_object(response: Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


class _Preflight:
    """The checks of one target (see the module docstring), each raising a PreflightError."""

    def __init__(self, target: Target, client: Client) -> None:
        self.target = target
        self.cms = CmsApi(target, client)
        self.notes: list[str] = []

    def fail(self, text: str) -> PreflightError:
        """The error for one problem, worded as a diagnosis."""
        return PreflightError(f"Preflight failed: {text}")

    def send(self, call: Callable[[], Response], what: str) -> Response:
        """One call to the CMS; an unreachable CMS is diagnosed here."""
        try:
            return call()
        except HTTPError as exc:
            base = self.target.cms.base_url
            raise self.fail(
                f"the harness cannot reach the CMS at {base} ({_why(exc)}) when it {what}. "
                f"Is the CMS running and listening there? Check "
                f"{_WHERE_CMS.get(self.target.kind, 'the CMS base URL')}.") from None

    def reachable(self) -> None:
        """The CMS answers at all (any status: no credentials are sent yet)."""
        self.send(partial(self.cms.read_egm_raw, self.target.egm_ids[0]), "reads an EGM")
        self.notes.append(f"CMS reachable at {self.target.cms.base_url}")

    def auth(self) -> None:
        """The OAuth2 token request succeeds; the Funding API takes TPAS's credentials."""
        profile = self.target.cms_profile
        if profile.auth.kind == "oauth2_client_credentials":
            response = self.send(self.cms.fetch_token, "asks for an OAuth2 token")
            body = _json_object(response) or {}
            if response.status_code != 200 or not body.get("access_token"):
                raise self.fail(
                    f"the CMS refused the OAuth2 token request (POST {profile.paths.token} as "
                    f"client {profile.auth.client_id!r} answered {_excerpt(response)}). Check "
                    "cms.auth.client_id and client_secret (and cms.paths.token) in the target "
                    "file: they are the credentials TPAS uses.")
            self.notes.append("OAuth2 token issued")
        probe = self.send(lambda: self.cms.get_funding(f"preflight-{secrets.token_hex(6)}"),
                          "asks for a funding's status")
        if probe.status_code in (401, 403):
            raise self.fail(
                f"the CMS refused TPAS's credentials ({profile.auth.kind}) on its Funding API "
                f"(GET {profile.paths.status('…')} answered {_excerpt(probe)}). Check cms.auth "
                "in the target file.")

    def egms(self) -> None:
        """Every EGM of the target answers its read, as the EGM, with a creditMeter."""
        paths = self.target.egm_paths
        for egm_id in self.target.egm_ids:
            path = paths.of(paths.read, egm_id)
            response = self.send(partial(self.cms.read_egm, egm_id), f"reads {egm_id}")
            body = _json_object(response) if response.status_code == 200 else None
            if response.status_code in (401, 403):
                problem = "refused the harness's credentials (the EGM's calls use cms.auth)"
            elif response.status_code == 404:
                problem = "does not know this EGM (check cms.egm_ids)"
            elif body is None or type(body.get("creditMeter")) is not int:
                problem = "must answer 200 with JSON holding creditMeter (integer minor units)"
            else:
                continue
            raise self.fail(f"GET {path} on the CMS answered {_excerpt(response)}: the CMS "
                            f"{problem}. Every scenario reads EGM meters this way "
                            "(cms.egm.read).")
        self.notes.append(f"{len(self.target.egm_ids)} EGM(s) answer")

    def hooks(self) -> None:
        """Every declared hook but `reset` answers its probe (`HOOK_PROBES`)."""
        control = self.target.cms_control
        declared = sorted(hook for hook in self.target.hooks if hook in HOOK_PROBES)
        if control is None or not declared:
            return
        for hook in declared:
            self.hook(control, hook)
        self.notes.append(f"hooks answer: {', '.join(declared)}")

    def hook(self, control: ControlApi, hook: str) -> None:
        """One hook's probe: reachable, the admin token taken, the documented shape."""
        method, path, kwargs, member = HOOK_PROBES[hook](self)
        try:
            response = control.call(method, path, timeout_s=READ_S, **kwargs)
        except HTTPError as exc:
            raise self.fail(f"the CMS's control API at {control.base_url} cannot be reached "
                            f"({_why(exc)}), and the target declares the {hook} hook there. "
                            "Check control.base_url in the target file.") from None
        if response.status_code in (401, 403):
            raise self.fail(f"the CMS's control API refused the admin token ({method} {path} "
                            f"answered {_excerpt(response)}). Check control.admin_token.")
        if response.status_code != 200 or not _shaped(response, member):
            shape = {ANY_ANSWER: "anything", ANY_OBJECT: "a JSON object"}.get(
                member, f"a JSON object holding {member!r}")
            raise self.fail(
                f"the target declares the {hook} hook, but {method} {control.base_url}{path} "
                f"answered {_excerpt(response)}; it must answer 200 with {shape}. Serve the "
                "hook as docs/partner-contract.md describes, or remove it from control.hooks "
                "(the scenarios that need it are then skipped).")

    def qr(self) -> None:
        """The first EGM's QR was issued by the harness's own Trustly (when it can be seen)."""
        paths = self.target.egm_paths
        url = self.asked_qr() if paths.acquire_qr is not None else self.shown_qr()
        if url is None:
            return
        if not self.issued_by_us(url):
            ours = self.ours()
            origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
            raise self.fail(
                f"your CMS got its QR from {origin} (it showed {url}), which is not the "
                f"harness's Trustly: the harness plays Trustly at {ours} and never issued that "
                f"QR, so payments would go to another Trustly. Point the CMS's Trustly base "
                f"URL at {ours}.")
        self.notes.append("QR issued by the harness's Trustly")

    def ours(self) -> str:
        """The base of the harness's Trustly as a CMS must be told it."""
        return self.target.trustly_public_url or self.target.trustly.base_url

    def asked_qr(self) -> str:
        """The url of a QR the CMS was asked for now (`cms.egm.acquire_qr`)."""
        paths = self.target.egm_paths
        egm_id = self.target.egm_ids[0]
        assert paths.acquire_qr is not None
        path = paths.of(paths.acquire_qr, egm_id)
        response = self.send(partial(self.cms.ask_for_qr, egm_id), f"asks for a QR for {egm_id}")
        body = _json_object(response) if response.status_code in (200, 201) else None
        url = body.get("url") if body else None
        if not isinstance(url, str) or not url:
            raise self.fail(
                f"the CMS could not give {egm_id} a QR (POST {path} answered "
                f"{_excerpt(response)}; it must answer JSON with the QR's url). A CMS gets its "
                f"QRs from Trustly: is its Trustly base URL {self.ours()}, with merchant "
                f"{self.target.merchant.merchant_id!r} and accessId "
                f"{self.target.merchant.access_id!r}?")
        return url

    def shown_qr(self) -> str | None:
        """The url in the QR image the first EGM shows (`cms.egm.qr_png`), if it shows one:
        a screen with no QR yet is left to the scenarios."""
        paths = self.target.egm_paths
        if paths.qr_png is None:
            return None
        egm_id = self.target.egm_ids[0]
        response = self.send(lambda: self.cms.qr_png(egm_id), f"reads {egm_id}'s QR image")
        if response.status_code != 200:
            return None
        try:
            texts = decode_qr_png(response.content)
        except OSError:  # not an image
            return None
        return texts[0] if len(texts) == 1 else None

    def issued_by_us(self, url: str) -> bool:
        """Whether the harness's Trustly knows the QR (its scan page describes it)."""
        base = self.target.trustly.base_url
        try:
            with self.target.trustly_client() as trustly:
                trustly.timeout = TIMEOUT
                response = phone_api.open_qr(
                    trustly, f"{base.rstrip('/')}/scan/{token_id_of(url)}")
        except phone_api.NotAQrUrl:  # no code in the url: no Trustly issued it
            return False
        except HTTPError as exc:
            raise self.fail(f"the harness's own Trustly at {base} does not answer ({_why(exc)})"
                            "; is something else holding its port?") from None
        return response.status_code == 200


ANY_ANSWER, ANY_OBJECT = "*", ""  # what a probe's 200 must hold, besides a named member
LISTS = frozenset({"entries", "fundings", "faults"})


def _shaped(response: Response, member: str) -> bool:
    """Whether a probe's 200 answer holds what the hook's documentation says."""
    if member == ANY_ANSWER:
        return True
    body = _json_object(response)
    if body is None:
        return False
    if member == "now":
        try:
            parse_instant(str(body.get("now")))
        except (ValueError, OverflowError):
            return False
        return True
    if member in LISTS:
        return isinstance(body.get(member), list)
    return member == ANY_OBJECT or member in body


# method, path, request kwargs, and what the answer must hold (a member, ANY_OBJECT, ANY_ANSWER)
Probe = tuple[str, str, dict[str, Any], str]


def _egm_state_probe(check: _Preflight) -> Probe:
    """Put the first EGM into the state it is in (a change that changes nothing)."""
    egm_id = check.target.egm_ids[0]
    state = check.cms.egm(egm_id).get("state", "IDLE")
    return "POST", f"/_sim/egms/{egm_id}", {"json": {"state": state}}, ANY_OBJECT


HOOK_PROBES: dict[str, Callable[[_Preflight], Probe]] = {
    "clock": lambda _: ("GET", "/_sim/clock", {}, "now"),
    "journal": lambda _: ("GET", "/_sim/journal", {"params": {"limit": 1}}, "entries"),
    "fundings": lambda _: ("GET", "/_sim/fundings",
                           {"params": {"since": format_instant(system_now())}}, "fundings"),
    "faults": lambda _: ("GET", "/_sim/faults", {}, "faults"),
    "qr-rotate": lambda _: ("POST", "/_sim/qr/rotate", {}, ANY_ANSWER),
    "egm-state": _egm_state_probe,
}


def run_preflight(target: Target,
                  align: Callable[[Target], None] | None = None) -> tuple[str, ...]:
    """Check `target` (see the module docstring); what was found, or a PreflightError.

    `align` (the clocks' alignment) runs once the hooks are known to answer and before the
    QR is asked for: a CMS whose clock an earlier run left a day ahead would otherwise judge
    the harness's fresh Trustly's QR expired.
    """
    with target.cms_client() as client:
        client.timeout = TIMEOUT
        check = _Preflight(target, client)
        check.reachable()
        check.auth()
        check.egms()
        check.hooks()
        if align is not None:
            try:
                align(target)
            except TargetError as exc:
                raise check.fail(f"the clocks could not be aligned ({exc}). Check the clock "
                                 "hook (docs/partner-contract.md).") from None
        check.qr()
    return tuple(check.notes)
