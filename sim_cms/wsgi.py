"""Entry points for production servers.

    granian --interface rsgi --factory --workers 2 'sim_cms.wsgi:create_rsgi'
    granian --interface wsgi --factory --workers 2 'sim_cms.wsgi:create'
    gunicorn --preload 'sim_cms.wsgi:create()'

Settings come from the environment (`SCANPAY_CMS_DATABASE_URL`, `SCANPAY_CONFIG`,
`SCANPAY_ADMIN_TOKEN`, `SCANPAY_CONTROLLABLE_CLOCK`). granian (the default, see
docs/performance.md) builds the app in every worker, migrations and seeding under the
start-up lock; gunicorn's `--preload` builds it once in the master before the workers fork.
Either way it refuses, with one paragraph on stderr saying what to fix and exit code 2, a
database that does not open or is another system's, and a controllable clock without the admin
token that moves it (`simkit.startup_checks`). `create_rsgi` (the production serving,
docs/operations.md) puts the app behind `simkit.rsgi_front`: a client must send its whole body
within `SCANPAY_BODY_TIMEOUT_S` and a slow one holds no thread while it does.
"""

from __future__ import annotations

from flask import Flask

from sim_cms.app import create_app
from sim_cms.models import Base
from sim_cms.settings import load_cms_settings
from simkit.models import KernelBase
from simkit.rsgi_front import RsgiFront, front_for
from simkit.startup_checks import check_clock_movable, check_database, refusing_start


def create() -> Flask:
    """Build sim_cms from the environment, once the start-up checks pass (else
    one paragraph on stderr and exit code 2)."""
    with refusing_start("sim_cms"):
        settings = load_cms_settings()
        check_clock_movable(settings.controllable_clock, settings.admin_token,
                            clock_setting="SCANPAY_CONTROLLABLE_CLOCK",
                            admin_setting="SCANPAY_ADMIN_TOKEN")
        check_database(settings.database_url, sim="sim_cms",
                       metadata=[KernelBase.metadata, Base.metadata],
                       setting="SCANPAY_CMS_DATABASE_URL")
    return create_app(settings)


def create_rsgi() -> RsgiFront:
    """`create`'s app behind the front that reads bodies before a thread runs them."""
    return front_for(create())
