"""What is under test: embedded sims, sims running locally, or a partner's CMS.

`load_target(path)` parses a target (embedded when no file; see `harness.target_config` for
the TOML) without starting anything; `open_target(spec)` brings up what the target needs for
the length of a block and yields a `Target`: how to reach Trustly, the CMS and their control
APIs, which hooks the CMS offers, which EGMs the harness may use, and two clocks to move.

- **embedded**: both sims in this process (`harness.embedded`), each on its own frozen
  `ManualClock`, reached through WSGI transports. Every hook.
- **local**: both sims already running (`scanpay serve --controllable-clock --admin-token T`),
  by base URL. Every hook the control API answers (the clock only when controllable).
- **partner**: the partner's CMS by base URL and its configured auth; the harness runs its
  own sim_trustly as a real HTTP server (werkzeug, threaded, on the configured host/port)
  with a partner profile pointing TPAS at the partner's CMS, and plays the player. Hooks are
  the ones the TOML declares.

Scenarios use only what a `Target` exposes, so the same catalogue runs against all three.
Before a target is handed out, `harness.certify.preflight` checks it (reachable, auth, hooks, QR
from the harness's Trustly, the harness's port free) and its clocks are aligned; a target
that cannot be used raises `TargetError` with a diagnosis.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from harness.clients.control import USER_AGENT, ControlApi
from harness.clients.http import Client, HTTPError, Request, open_client
from harness.flow import Endpoint
from harness.target_config import (
    DEMO_LIMITS_AUTH,
    HOOKS,
    EgmPaths,
    MerchantCredentials,
    TargetKind,
    TargetSpec,
    embedded_spec,
    load_target,
    local_spec,
)
from sim_trustly.cms_client.partner_profiles import AuthConfig, CmsProfile
from simkit.clock import format_instant, parse_instant
from simkit.settings import ConfigError

__all__ = ["HOOKS", "Target", "TargetError", "TargetSpec", "embedded_spec", "load_target",
           "local_spec", "open_target"]
TIMEOUT_S = 30.0
ALIGN_TOLERANCE_S = 5.0


OnRequest = Callable[[Request], None] | None


class TargetError(Exception):
    """The target cannot be used: unreachable, refuses the admin token, or will not start."""


@dataclass(frozen=True)
class Target:
    """A target brought up: endpoints, credentials, hooks and EGMs of one certification run.

    `trustly_control` is always there: on the partner target the harness runs that Trustly
    itself. `cms_control` is there when the CMS offers any hook.
    """

    kind: TargetKind
    name: str
    trustly: Endpoint
    cms: Endpoint
    cms_profile: CmsProfile
    egm_paths: EgmPaths
    egm_ids: tuple[str, ...]
    hooks: frozenset[str]
    merchant: MerchantCredentials
    trustly_control: ControlApi
    cms_control: ControlApi | None
    trustly_public_url: str = ""  # the base of the QR urls the harness's Trustly issues
    preflight: tuple[str, ...] = ()  # what the preflight found (for the console)
    cms_limits_auth: AuthConfig | None = None  # who changes daily limits (None: TPAS's auth)
    # Every move the run made with `advance` (seconds), for the report: the partner's clock
    # stays where the run left it.
    clock_moves: list[float] = field(default_factory=list)

    @property
    def clock_moved_s(self) -> float | None:
        """How far the run moved the CMS's clock; None when the CMS offers no clock hook."""
        return sum(self.clock_moves) if self.has("clock") else None

    @property
    def limits_auth(self) -> AuthConfig:
        """The credentials daily limits are changed with: the casino's, where the CMS keeps
        that from TPAS's client (the reference CMS does), else TPAS's own."""
        return self.cms_limits_auth or self.cms_profile.auth

    def has(self, hook: str) -> bool:
        """Whether the CMS offers `hook` (one of `HOOKS`)."""
        return hook in self.hooks

    def missing(self, needs: Iterable[str]) -> list[str]:
        """The hooks of `needs` this target does not offer, in order."""
        return [need for need in needs if need not in self.hooks]

    def cms_client(self, on_request: OnRequest = None, /, **headers: str) -> Client:
        """A client to the CMS's API, as TPAS or the EGM (no credentials attached), for a
        `CmsApi`; `on_request` sees each request first (journal marks)."""
        return open_client(self.cms.base_url, transport=self.cms.transport, timeout=TIMEOUT_S,
                           headers={"User-Agent": USER_AGENT, **headers}, on_request=on_request)

    def trustly_client(self, on_request: OnRequest = None, /, **headers: str) -> Client:
        """A client to Trustly (the QR Code API, the microsite's JSON API), for a
        `TrustlyApi` or a partner's tests."""
        return open_client(self.trustly.base_url, transport=self.trustly.transport,
                           timeout=TIMEOUT_S, headers={"User-Agent": USER_AGENT, **headers},
                           on_request=on_request)

    def phone_client(self, on_request: OnRequest = None, /, **headers: str) -> Client:
        """What a phone opening a QR url uses (`harness.clients.phone`): absolute urls,
        in-process Trustly if embedded."""
        return open_client(transport=self.trustly.transport, timeout=TIMEOUT_S,
                           headers={"User-Agent": f"{USER_AGENT} (phone)", **headers},
                           on_request=on_request)

    def now(self) -> datetime:
        """The CMS's now (with the clock hook), else Trustly's: the run's reference time."""
        control = self.cms_control if self.has("clock") else self.trustly_control
        assert control is not None
        return _read_clock(control)

    def earliest_now(self) -> datetime:
        """The earlier of both systems' nows (where a run's records start)."""
        controls = [self.trustly_control]
        if self.cms_control is not None and self.has("clock"):
            controls.append(self.cms_control)
        return min(_read_clock(control) for control in controls)

    def advance(self, seconds: float) -> None:
        """Move both systems' clocks by `seconds` (needs the clock hook).

        Two sims of one deployment (`scanpay serve`) share one clock: moving the CMS's then
        moves Trustly's too, and moving Trustly's as well would move it twice. So Trustly's
        is moved only by what the CMS's move did not already move it.
        """
        if not self.has("clock") or self.cms_control is None:
            raise TargetError("this target's CMS offers no clock hook")
        before = _read_clock(self.trustly_control)
        _move_clock(self.cms_control, {"advance": seconds})
        self.clock_moves.append(seconds)
        moved = (_read_clock(self.trustly_control) - before).total_seconds()
        if abs(moved) < abs(seconds) / 2:  # a clock of its own (frozen: it did not move)
            _move_clock(self.trustly_control, {"advance": seconds})


def _read_clock(control: ControlApi) -> datetime:
    try:
        response = control.call("GET", "/_sim/clock")
        if response.status_code != 200:
            raise TargetError(f"{control.base_url}/_sim/clock answered {response.status_code}")
        return parse_instant(str(response.json()["now"]))
    except (HTTPError, ValueError, KeyError, TypeError) as exc:
        raise TargetError(f"{control.base_url}/_sim/clock cannot be read ({exc})") from exc


def _move_clock(control: ControlApi, body: dict[str, Any]) -> None:
    try:
        response = control.call("POST", "/_sim/clock", json=body)
    except HTTPError as exc:
        raise TargetError(f"{control.base_url}/_sim/clock cannot be moved ({exc})") from exc
    if response.status_code != 200:
        raise TargetError(f"{control.base_url}/_sim/clock refused {body}: "
                          f"HTTP {response.status_code} {response.text[:200]}")


def _align_clocks(target: Target) -> None:
    """Start Trustly's clock where the CMS's is (two systems, but one moment)."""
    if target.cms_control is None or not target.has("clock"):
        return
    cms_now, trustly_now = _read_clock(target.cms_control), _read_clock(target.trustly_control)
    if abs((cms_now - trustly_now).total_seconds()) > ALIGN_TOLERANCE_S:
        _move_clock(target.trustly_control, {"set": format_instant(cms_now)})


@contextmanager
def open_target(spec: TargetSpec) -> Iterator[Target]:
    """Bring up what `spec` needs for the block; raises TargetError when it cannot be used."""
    from harness.certify.preflight import run_preflight  # it builds on this module

    with ExitStack() as stack:
        if spec.kind == "embedded":
            target = _open_embedded(stack, spec)
        elif spec.kind == "local":
            target = _open_local(spec)
        else:
            target = _open_partner(stack, spec)
        found = run_preflight(target, align=_align_clocks)  # aligns before it asks for a QR
        yield replace(target, preflight=target.preflight + found)


def _open_embedded(stack: ExitStack, spec: TargetSpec) -> Target:
    from harness.embedded import embedded_sims  # builds the sims: imported only when asked
    from simkit.clock import ManualClock, system_now

    start = system_now()
    sims = stack.enter_context(embedded_sims(trustly_clock=ManualClock(start),
                                             cms_clock=ManualClock(start)))
    token = sims.admin_token
    profile = CmsProfile(name="default", base_url=sims.cms_url, auth=spec.cms_profile.auth)
    return Target(
        kind="embedded", name=spec.name,
        trustly=Endpoint(sims.trustly_url, sims.trustly_transport),
        cms=Endpoint(sims.cms_url, sims.cms_transport), cms_profile=profile,
        egm_paths=spec.egm_paths, egm_ids=spec.egm_ids, hooks=frozenset(HOOKS),
        merchant=spec.merchant,
        trustly_control=ControlApi(sims.trustly_url, token, sims.trustly_transport),
        cms_control=ControlApi(sims.cms_url, token, sims.cms_transport),
        cms_limits_auth=spec.cms_limits_auth or DEMO_LIMITS_AUTH)


def _probe(control: ControlApi, who: str) -> dict[str, Any]:
    """The control API's clock, or a TargetError that says why it cannot be used."""
    try:
        response = control.call("GET", "/_sim/clock")
    except HTTPError as exc:
        raise TargetError(f"cannot reach {who} at {control.base_url} ({exc})") from exc
    if response.status_code in (401, 403):
        raise TargetError(f"{who} at {control.base_url} refused the admin token")
    if response.status_code == 404:
        raise TargetError(f"{who} at {control.base_url} serves no control API "
                          "(started without --admin-token?)")
    if response.status_code != 200:
        raise TargetError(f"{who} at {control.base_url}: HTTP {response.status_code}")
    body: dict[str, Any] = response.json()
    return body


def _open_local(spec: TargetSpec) -> Target:
    assert spec.trustly_url is not None and spec.admin_token is not None
    cms_url = spec.cms_profile.base_url
    trustly_control = ControlApi(spec.trustly_url, spec.admin_token)
    cms_control = ControlApi(cms_url, spec.admin_token)
    clocks = [_probe(trustly_control, "sim_trustly"), _probe(cms_control, "the CMS")]
    hooks = set(HOOKS)
    if not all(clock.get("controllable") for clock in clocks):
        hooks.discard("clock")  # not started with --controllable-clock
    return Target(
        kind="local", name=spec.name, trustly=Endpoint(spec.trustly_url),
        cms=Endpoint(cms_url), cms_profile=spec.cms_profile, egm_paths=spec.egm_paths,
        egm_ids=spec.egm_ids, hooks=frozenset(hooks), merchant=spec.merchant,
        trustly_control=trustly_control, cms_control=cms_control,
        cms_limits_auth=spec.cms_limits_auth or DEMO_LIMITS_AUTH)


def _partner_trustly(stack: ExitStack, spec: TargetSpec, admin_token: str, clock: Any) -> Any:
    """The harness's own sim_trustly, paying into the partner's CMS (not served yet)."""
    from sim_trustly.app import create_app
    from sim_trustly.settings import MerchantConfig, TrustlySettings
    from simkit.db import sqlite_url

    data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scanpay-cert-")))
    merchant = spec.merchant
    settings = TrustlySettings(
        database_url=sqlite_url(str(data_dir / "trustly.db")),
        public_base_url=spec.trustly.base_url, admin_token=admin_token, journal=True,
        merchants=(MerchantConfig(merchant.merchant_id, merchant.access_id,
                                  merchant.access_key, name=merchant.name,
                                  token_lifetime_s=merchant.token_lifetime_s),),
        cms=spec.cms_profile)
    return create_app(settings, clock=clock)


def _open_partner(stack: ExitStack, spec: TargetSpec) -> Target:
    from harness.certify.preflight import claim_port
    from sim_trustly.cms_client.adapters import close_adapters
    from simkit.clock import ManualClock, system_now

    control = spec.control
    clock = ManualClock(system_now())
    if control is None or "clock" not in control.hooks:
        clock.resume()  # the partner's CMS runs on real time: so does our Trustly
    admin_token = secrets.token_urlsafe(24)
    host, port = spec.trustly.host, spec.trustly.port
    # Bound before anything is built: werkzeug would print and sys.exit on a busy port.
    listening = claim_port(host, port, "the harness's own Trustly (which the CMS asks for QRs)")
    with listening:
        try:
            app = _partner_trustly(stack, spec, admin_token, clock)
            server = make_server(host, port, app, threaded=True, fd=listening.fileno())
        except (ConfigError, OSError) as exc:
            raise TargetError(f"cannot start the harness's sim_trustly on {host}:{port}: "
                              f"{exc}") from exc
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="certify-trustly")
    thread.start()
    stack.callback(_close_db, app.extensions["sim_trustly"].db)
    stack.callback(close_adapters, app.extensions["sim_trustly"])
    stack.callback(server.server_close)  # after shutdown: the port is free again at once
    stack.callback(server.shutdown)
    local = f"http://{_connect_host(host)}:{port}"
    return Target(
        kind="partner", name=spec.name, trustly=Endpoint(local),
        cms=Endpoint(spec.cms_profile.base_url), cms_profile=spec.cms_profile,
        egm_paths=spec.egm_paths, egm_ids=spec.egm_ids,
        hooks=control.hooks if control else frozenset(), merchant=spec.merchant,
        trustly_control=ControlApi(local, admin_token),
        cms_control=ControlApi(control.base_url, control.admin_token) if control else None,
        trustly_public_url=spec.trustly.base_url, cms_limits_auth=spec.cms_limits_auth,
        preflight=(f"port {port} free for the harness's Trustly",))


def _close_db(db: Any) -> None:
    """Store the rows the background writer still holds, then close the pool (before the
    temporary data directory goes)."""
    from simkit.batch_writer import writer_for

    writer_for(db).flush()
    db.dispose()


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
