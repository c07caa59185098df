"""`scanpay serve`: build the sims and serve them on threaded WSGI servers until interrupted.

One clock per deployment: sim_cms is given sim_trustly's clock object. With
`--controllable-clock` that clock keeps its state in sim_trustly's database, so a move made
through either sim's `/_sim/clock` is the one move both see, and both always report the same
`now` (the CMS's own clock row stays unused).
"""

from __future__ import annotations

import errno
import socket
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flask import Flask
from rich.console import Console
from werkzeug.serving import BaseWSGIServer, make_server, select_address_family

from sim_cms.app import create_app as create_cms
from sim_cms.models import Base as CmsBase
from sim_cms.qr_display import start_rotation_worker
from sim_cms.settings import DEMO_CLIENT, DEMO_DESK_CLIENT, TrustlyLink, load_cms_settings
from sim_trustly.app import create_app as create_trustly
from sim_trustly.cms_client.partner_profiles import DEFAULT_CMS_PROFILE
from sim_trustly.models import Base as TrustlyBase
from sim_trustly.settings import DEMO_MERCHANT, load_trustly_settings
from sim_trustly.tpas.recovery import release_leases_at_startup, start_recovery_worker
from simkit.clock import Clock
from simkit.db import sqlite_url
from simkit.models import KernelBase
from simkit.settings import ConfigError
from simkit.startup_checks import (
    check_clock_movable,
    check_database,
    check_separate_databases,
    parse_database_url,
)

TRUSTLY_DB_SETTING = "--trustly-db or SCANPAY_TRUSTLY_DATABASE_URL"
CMS_DB_SETTING = "--cms-db or SCANPAY_CMS_DATABASE_URL"


@dataclass(frozen=True)
class ServeOptions:
    """The flags of `scanpay serve`: docs/architecture.md §20 (Fixed points)."""

    trustly_port: int = 8710
    cms_port: int = 8720
    host: str = "127.0.0.1"
    public_url: str | None = None
    data_dir: Path = Path("data")
    trustly_db: str | None = None
    cms_db: str | None = None
    config_file: Path | None = None
    controllable_clock: bool = False
    admin_token: str | None = None


def trustly_database_url(options: ServeOptions) -> str:
    """sim_trustly's database: the URL given, else a SQLite file in the data directory."""
    return options.trustly_db or sqlite_url(str(options.data_dir / "trustly.db"))


def cms_database_url(options: ServeOptions) -> str:
    """sim_cms's database: the URL given, else a SQLite file in the data directory."""
    return options.cms_db or sqlite_url(str(options.data_dir / "cms.db"))


def check_startup(options: ServeOptions) -> None:
    """Refuse, before anything is built, the set-ups that cannot work: a controllable clock
    nothing can move, a database URL that is not one, both sims on one database, a database
    that does not open or is another system's (`simkit.startup_checks`)."""
    check_clock_movable(options.controllable_clock, options.admin_token,
                        clock_setting="--controllable-clock",
                        admin_setting="--admin-token TOKEN (or SCANPAY_ADMIN_TOKEN)")
    try:
        options.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the data directory {options.data_dir}: "
                          f"{exc.strerror}. Give --data-dir a directory this user may "
                          "write.") from None
    trustly_db, cms_db = trustly_database_url(options), cms_database_url(options)
    parse_database_url(trustly_db, sim="sim_trustly", setting=TRUSTLY_DB_SETTING)
    parse_database_url(cms_db, sim="sim_cms", setting=CMS_DB_SETTING)
    check_separate_databases(("sim_trustly", trustly_db), ("sim_cms", cms_db),
                             settings="--trustly-db and --cms-db")
    check_database(trustly_db, sim="sim_trustly", setting=TRUSTLY_DB_SETTING,
                   metadata=[KernelBase.metadata, TrustlyBase.metadata])
    check_database(cms_db, sim="sim_cms", setting=CMS_DB_SETTING,
                   metadata=[KernelBase.metadata, CmsBase.metadata])


def listen(host: str, port: int, *, sim: str, flag: str) -> socket.socket:
    """A listening socket on host:port, or ConfigError saying why there cannot be one.

    Bound before the sims are built, so a busy port is refused at once, by `scanpay serve`
    (exit code 2) rather than by the web server (which would exit 1 after the migrations).
    """
    try:
        return socket.create_server((host, port), family=select_address_family(host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host}, where {sim} should listen, is already in use (by "
                f"another scanpay serve?): stop what holds it, or choose another port with "
                f"{flag}.") from None
        raise ConfigError(f"{sim} cannot listen on {host}:{port}: {exc.strerror or exc}. "
                          f"Check --host and {flag}.") from None


def build_trustly(options: ServeOptions) -> Flask:
    """sim_trustly configured from the flags, the config file and the environment."""
    options.data_dir.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, Any] = {
        "database_url": trustly_database_url(options),
        "public_base_url": options.public_url or _public_url(options),
        "controllable_clock": options.controllable_clock,
    }
    if options.admin_token:
        overrides["admin_token"] = options.admin_token
    settings = load_trustly_settings(config_path=options.config_file, **overrides)
    if settings.cms == DEFAULT_CMS_PROFILE:  # not configured: TPAS pays into the CMS we run
        local = replace(DEFAULT_CMS_PROFILE, base_url=_local_url(options.cms_port))
        settings = replace(settings, cms=local)
    return create_trustly(settings)


def build_cms(options: ServeOptions, *, clock: Clock | None = None) -> Flask:
    """sim_cms, wired to the sim_trustly that `serve` runs next to it; on `clock` if given."""
    options.data_dir.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, Any] = {
        "database_url": cms_database_url(options),
        "controllable_clock": options.controllable_clock,
    }
    if options.admin_token:
        overrides["admin_token"] = options.admin_token
    settings = load_cms_settings(config_path=options.config_file, **overrides)
    if settings.trustly == TrustlyLink():  # not configured: use the Trustly we run
        overrides["trustly"] = TrustlyLink(base_url=_local_url(options.trustly_port))
        settings = load_cms_settings(config_path=options.config_file, **overrides)
    return create_cms(settings, clock=clock)


def build_sims(options: ServeOptions) -> tuple[Flask, Flask]:
    """sim_trustly and sim_cms as `serve` runs them: wired to each other, on one clock."""
    trustly = build_trustly(options)
    return trustly, build_cms(options, clock=trustly.extensions["sim_trustly"].clock)


def _public_url(options: ServeOptions) -> str:
    # 0.0.0.0 is where to listen, not an address a phone can open: fall back on loopback.
    host = "127.0.0.1" if options.host in ("0.0.0.0", "::") else options.host  # noqa: S104
    return f"http://{host}:{options.trustly_port}"


def _local_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _start(app: Flask, host: str, listening: socket.socket) -> BaseWSGIServer:
    """Serve `app` on the socket `listen` bound (the server takes its own copy of it)."""
    port = listening.getsockname()[1]
    with listening:
        server = make_server(host, port, app, threaded=True, fd=listening.fileno())
    threading.Thread(target=server.serve_forever, daemon=True, name=f"serve-{port}").start()
    return server


def _banner(console: Console, options: ServeOptions, trustly_url: str, cms_url: str) -> None:
    console.print(f"[bold green]sim_trustly[/] listening on {trustly_url}")
    console.print(
        f"  QR token:  POST {trustly_url}/auth-service/api/oauth2/qrcode/token\n"
        f"  OpenAPI:   {trustly_url}/openapi.json\n"
        f"  merchant {DEMO_MERCHANT.merchant_id}: accessId {DEMO_MERCHANT.access_id}, "
        f"accessKey {DEMO_MERCHANT.access_key}\n"
        f"  try: curl -s -u {DEMO_MERCHANT.access_id}:{DEMO_MERCHANT.access_key} "
        f"-H 'Content-Type: application/json' "
        f"-d '{{\"merchantId\": \"{DEMO_MERCHANT.merchant_id}\", \"egmId\": \"EGM-001\"}}' "
        f"{trustly_url}/auth-service/api/oauth2/qrcode/token"
    )
    if options.admin_token:
        console.print(f"  control API: {trustly_url}/_sim/ (Authorization: Bearer <admin token>)")
    console.print(f"[bold green]sim_cms[/] listening on {cms_url}")
    console.print(
        f"  EGM screen: {cms_url}/egm/EGM-001   (EGM-001 .. EGM-010)\n"
        f"  CWS API:    {cms_url}/cws/v1 (OAuth2 client {DEMO_CLIENT.client_id} / "
        f"{DEMO_CLIENT.client_secret}, scopes {' '.join(DEMO_CLIENT.scopes)}; limits are "
        f"changed as {DEMO_DESK_CLIENT.client_id} / {DEMO_DESK_CLIENT.client_secret})\n"
        f"  OpenAPI:    {cms_url}/openapi.json"
    )
    console.print("[dim]Ctrl-C stops.[/]")


def run_servers(options: ServeOptions, console: Console) -> None:
    """Serve until Ctrl-C; prints the base URLs and the demo credentials.

    Raises ConfigError, before anything is served, when the set-up cannot work.
    """
    check_startup(options)
    if options.trustly_port == options.cms_port:
        raise ConfigError(f"--trustly-port and --cms-port are both {options.cms_port}: give "
                          "the sims two different ports.")
    to_trustly = listen(options.host, options.trustly_port, sim="sim_trustly",
                        flag="--trustly-port")
    try:
        to_cms = listen(options.host, options.cms_port, sim="sim_cms", flag="--cms-port")
    except ConfigError:
        to_trustly.close()
        raise
    trustly, cms = build_sims(options)
    servers = [_start(trustly, options.host, to_trustly), _start(cms, options.host, to_cms)]
    rotation = start_rotation_worker(cms)
    # Payments an earlier run left open go to the background sweep: no CMS delays start-up.
    released = release_leases_at_startup(trustly)
    if released:
        console.print(f"{released} payment(s) left open by an earlier run: the recovery sweep "
                      "carries them on")
    recovery = start_recovery_worker(trustly)
    _banner(console, options, f"http://{options.host}:{options.trustly_port}",
            f"http://{options.host}:{options.cms_port}")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        rotation.stop()
        recovery.stop()
        for server in servers:
            server.shutdown()
