"""sim_cms's application factory: everything is built here, nothing at import time."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from flask import Flask

from sim_cms import (
    admin_api,
    control_openapi,
    control_state,
    egms_api,
    limits_api,
    oauth_api,
    openapi,
    screen_api,
)
from sim_cms.context import EXTENSION, CmsContext
from sim_cms.errors import render_problem
from sim_cms.funding import api as funding_api
from sim_cms.funding.fast_path import FundingFastPath
from sim_cms.seed import reset, seed
from sim_cms.settings import CmsSettings
from simkit.clock import Clock, ManualClock, SystemClock
from simkit.clock_store import DatabaseClockStore
from simkit.control import ControlHooks, enable_control, make_control_blueprint
from simkit.db import Database
from simkit.errors import install_error_handler
from simkit.faults import FaultPlan, install_faults
from simkit.journal import Journal, install_journal
from simkit.json_provider import install_orjson
from simkit.migrate import upgrade_to_head
from simkit.startup_lock import startup_lock

MIGRATIONS = Path(__file__).parent / "migrations"


def _install_control(app: Flask, ctx: CmsContext, journal: Journal) -> FaultPlan:
    def reset_all() -> None:
        with ctx.db.write() as session:
            reset(session, ctx.settings, ctx.clock.now())
        ctx.tokens.clear()  # the reset deleted every issued token
        ctx.known_egms.clear()  # and every EGM the settings do not name

    faults = FaultPlan(ctx.db)
    install_faults(app, faults, idempotency_tables=("funding_records",))
    assert ctx.settings.admin_token is not None
    bp = make_control_blueprint(
        admin_token=ctx.settings.admin_token, clock=ctx.clock,
        journal=journal, faults=faults,
        hooks=ControlHooks(reset=reset_all, state=partial(control_state.state_dump, ctx)),
    )
    admin_api.add_admin_routes(bp)
    control_openapi.add_route(bp)
    enable_control(app, bp)
    return faults


def create_app(
    settings: CmsSettings, *, clock: Clock | None = None, database: Database | None = None,
    trustly_transport: Any = None,
) -> Flask:
    """Build sim_cms: migrate and seed its database, then wire blueprints and hooks.

    `trustly_transport` (an httpx transport) lets tests and the embedded harness reach an
    in-process sim_trustly; by default the CMS calls `settings.trustly.base_url` over HTTP.
    """
    db = database or Database(settings.database_url)
    with startup_lock(db):
        upgrade_to_head(MIGRATIONS, db)
        if clock is None:
            clock = ManualClock(store=DatabaseClockStore(db)) if settings.controllable_clock \
                else SystemClock()
        with db.write() as session:
            seed(session, settings, clock.now())
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    install_orjson(app)
    ctx = CmsContext(settings=settings, db=db, clock=clock, trustly_transport=trustly_transport)
    app.extensions[EXTENSION] = ctx
    install_error_handler(app, render_problem)
    journal = Journal(db, clock)
    if settings.journal_enabled:
        install_journal(app, journal)
    faults = _install_control(app, ctx, journal) if settings.control_enabled else None
    for blueprint in (oauth_api.bp, funding_api.bp, limits_api.bp, egms_api.bp, screen_api.bp,
                      openapi.bp):
        app.register_blueprint(blueprint)
    app.wsgi_app = FundingFastPath(  # type: ignore[method-assign]
        app.wsgi_app, ctx, faults=faults,
        journal=journal if settings.journal_enabled else None)
    ctx.close()  # no pooled connection may cross a fork into gunicorn workers
    return app
