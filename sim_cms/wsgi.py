"""WSGI entry point for production servers.

    granian --interface wsgi --factory --workers 2 'sim_cms.wsgi:create'
    gunicorn --preload 'sim_cms.wsgi:create()'

Settings come from the environment (`SCANPAY_CMS_DATABASE_URL`, `SCANPAY_CONFIG`,
`SCANPAY_ADMIN_TOKEN`, `SCANPAY_CONTROLLABLE_CLOCK`). granian (the default, see
docs/performance.md) builds the app in every worker, migrations and seeding under the
start-up lock; gunicorn's `--preload` builds it once in the master before the workers fork.
"""

from __future__ import annotations

from flask import Flask

from sim_cms.app import create_app
from sim_cms.settings import load_cms_settings


def create() -> Flask:
    """Build sim_cms from the environment."""
    return create_app(load_cms_settings())
