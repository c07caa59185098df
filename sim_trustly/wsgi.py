"""Entry points for production servers.

    granian --interface rsgi --factory --workers 2 'sim_trustly.wsgi:create_rsgi_in_worker'
    granian --interface wsgi --factory --workers 2 'sim_trustly.wsgi:create_in_worker'
    gunicorn --preload -c python:sim_trustly.gunicorn_hooks 'sim_trustly.wsgi:create()'

Settings come from the environment (`SCANPAY_TRUSTLY_DATABASE_URL`, `SCANPAY_CONFIG`,
`SCANPAY_ADMIN_TOKEN`, `SCANPAY_CONTROLLABLE_CLOCK`, `SCANPAY_TRUSTLY_PUBLIC_URL`,
`SCANPAY_TRUSTLY_CMS_URL`).

- `create_in_worker` is for servers that build the app in every worker process (granian, the
  default; see docs/performance.md): migrations and seeding run under the start-up lock, and
  each worker starts the TPAS recovery sweep in the background, so a payment a crash left
  open is finished by whichever worker sweeps first, while serving starts at once.
- `create_rsgi_in_worker` is `create_in_worker` behind `simkit.rsgi_front` (the production
  serving, docs/operations.md): a client must send its whole body within
  `SCANPAY_BODY_TIMEOUT_S` and a slow one holds no thread while it does.
- `create` is for gunicorn with `--preload`: the migrations and seeding run once in the
  master before the workers fork, which also ends the leases a dead process left (a database
  update, no CMS call); the hooks module starts the sweep in every worker, whose first tick
  takes those payments over.

Both refuse, with one paragraph on stderr saying what to fix and exit code 2, a database that
does not open or is another system's, and a controllable clock without the admin token that
moves it (`simkit.startup_checks`).

Neither waits for any CMS: a CMS that is down or never answers delays no start-up
(`sim_trustly.tpas.recovery`).
"""

from __future__ import annotations

import logging

from flask import Flask

from sim_trustly.app import create_app
from sim_trustly.auth_service.fast_path import TokenFastPath
from sim_trustly.context import EXTENSION
from sim_trustly.models import Base
from sim_trustly.settings import TrustlySettings, load_trustly_settings
from sim_trustly.tpas.recovery import release_leases_at_startup, start_recovery_worker
from simkit.heap import settle_heap
from simkit.models import KernelBase
from simkit.rsgi_front import RsgiFront, front_for
from simkit.startup_checks import check_clock_movable, check_database, refusing_start

log = logging.getLogger(__name__)


def checked_settings() -> TrustlySettings:
    """The environment's settings, once the start-up checks pass (else one paragraph on
    stderr and exit code 2)."""
    with refusing_start("sim_trustly"):
        settings = load_trustly_settings()
        check_clock_movable(settings.controllable_clock, settings.admin_token,
                            clock_setting="SCANPAY_CONTROLLABLE_CLOCK",
                            admin_setting="SCANPAY_ADMIN_TOKEN")
        check_database(settings.database_url, sim="sim_trustly",
                       metadata=[KernelBase.metadata, Base.metadata],
                       setting="SCANPAY_TRUSTLY_DATABASE_URL")
    return settings


def create() -> Flask:
    """Build sim_trustly from the environment and free what a crash left open (preload).

    The master alone uses the database now, so every lease is a dead process's: ending them
    lets the workers' sweeps take those payments over at their first tick.
    """
    app = create_app(checked_settings())
    released = release_leases_at_startup(app)
    if released:
        log.warning("%d open payments left by an earlier run go to the recovery sweep", released)
    app.extensions[EXTENSION].close()  # no HTTP or database connection may cross the fork
    return app


def create_in_worker() -> Flask:
    """Build sim_trustly in this worker process and start its recovery sweep."""
    app = create_app(checked_settings())
    start_recovery_worker(app)
    settle_heap()
    return app


def create_rsgi_in_worker() -> RsgiFront:
    """`create_in_worker`'s app behind the front that reads bodies before a thread runs, the
    QR Code API's common case answered on the event loop (no hand-over to a thread)."""
    app = create_in_worker()
    fast_path = app.wsgi_app
    inline = fast_path.answer_inline if isinstance(fast_path, TokenFastPath) else None
    return front_for(app, inline=inline)
