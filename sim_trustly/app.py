"""sim_trustly's application factory: everything is built here, nothing at import time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, Response, request

from sim_trustly import admin_api, control_openapi
from sim_trustly.auth_service import api as auth_service_api
from sim_trustly.auth_service import openapi
from sim_trustly.auth_service.fast_path import CredentialCache, TokenFastPath
from sim_trustly.auth_service.issuance import flush_issued
from sim_trustly.auth_service.keys import ensure_signing_keys, validate_configured
from sim_trustly.auth_service.merchants import reset_state, seed_merchants
from sim_trustly.context import EXTENSION, TrustlyContext
from sim_trustly.errors import render_trustly_error
from sim_trustly.microsite import api as microsite_api
from sim_trustly.microsite import openapi as microsite_openapi
from sim_trustly.microsite import pages_api as microsite_pages
from sim_trustly.settings import TrustlySettings
from sim_trustly.tpas import admin_api as tpas_admin_api
from simkit.clock import Clock, ManualClock, SystemClock
from simkit.clock_store import DatabaseClockStore
from simkit.control import ControlHooks, make_control_blueprint
from simkit.db import Database
from simkit.errors import install_error_handler
from simkit.faults import FaultPlan, install_faults
from simkit.journal import Journal, install_journal
from simkit.json_provider import install_orjson
from simkit.migrate import upgrade_to_head
from simkit.startup_lock import startup_lock

MIGRATIONS = Path(__file__).parent / "migrations"


def _default_clock(settings: TrustlySettings, db: Database) -> Clock:
    if settings.controllable_clock:
        return ManualClock(store=DatabaseClockStore(db))
    return SystemClock()


def _seed(settings: TrustlySettings, db: Database, clock: Clock) -> None:
    configured = validate_configured(settings.signing_keys)
    now = clock.now()
    with db.write() as session:
        seed_merchants(session, settings.merchants, now)
        ensure_signing_keys(session, configured, settings.signing_alg, now)


def _install_control(
    app: Flask, ctx: TrustlyContext, journal: Journal, cache: CredentialCache
) -> FaultPlan:
    def reset() -> None:
        flush_issued(ctx.db)  # a token queued before the reset must not land after it
        with ctx.db.write() as session:
            reset_state(session, ctx.settings.merchants, ctx.clock.now())

    def forget_cached_state(response: Response) -> Response:
        # Any change made through the control API (merchants, credentials, keys, reset) is
        # seen by this process's next request; other workers see it within the cache's TTL.
        if request.method != "GET":
            cache.clear()
        return response

    faults = FaultPlan(ctx.db)
    install_faults(app, faults, idempotency_tables=("payments",))
    assert ctx.settings.admin_token is not None
    bp = make_control_blueprint(
        admin_token=ctx.settings.admin_token, clock=ctx.clock,
        journal=journal, faults=faults, hooks=ControlHooks(reset=reset),
    )
    admin_api.add_admin_routes(bp)
    tpas_admin_api.add_tpas_admin_routes(bp)
    control_openapi.add_route(bp)
    bp.after_request(forget_cached_state)
    app.register_blueprint(bp)
    return faults


def create_app(
    settings: TrustlySettings, *, clock: Clock | None = None, database: Database | None = None,
    cms_transport: Any = None,
) -> Flask:
    """Build sim_trustly: migrate and seed its database, then wire blueprints and hooks.

    `cms_transport` (an httpx transport) lets tests and the embedded harness reach an
    in-process CMS; by default TPAS calls each merchant's CMS over HTTP.
    """
    validate_configured(settings.signing_keys)  # a weak key stops start-up before any I/O
    db = database or Database(settings.database_url)
    with startup_lock(db):
        upgrade_to_head(MIGRATIONS, db)
        clock = clock or _default_clock(settings, db)
        _seed(settings, db, clock)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    install_orjson(app)
    ctx = TrustlyContext(settings=settings, db=db, clock=clock, cms_transport=cms_transport)
    app.extensions[EXTENSION] = ctx
    install_error_handler(app, render_trustly_error)
    journal = Journal(db, clock)
    if settings.journal_enabled:
        install_journal(app, journal)
    cache = CredentialCache()
    faults = _install_control(app, ctx, journal, cache) if settings.control_enabled else None
    app.wsgi_app = TokenFastPath(  # type: ignore[method-assign]
        app.wsgi_app, ctx, cache=cache, faults=faults,
        journal=journal if settings.journal_enabled else None,
    )
    app.register_blueprint(auth_service_api.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(microsite_pages.bp)
    app.register_blueprint(microsite_api.bp)
    app.register_blueprint(microsite_openapi.bp)
    ctx.close()  # no pooled connection may cross a fork into gunicorn workers
    return app
