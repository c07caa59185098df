"""WSGI entry point of the broken CMS: `gunicorn --preload 'tests.broken_cms.wsgi:create()'`.

The same environment as `sim_cms.wsgi` (`SCANPAY_CMS_DATABASE_URL`, `SCANPAY_CONFIG`,
`SCANPAY_ADMIN_TOKEN`, `SCANPAY_CONTROLLABLE_CLOCK`, `SCANPAY_CMS_TRUSTLY_URL`), plus
`SCANPAY_BROKEN_DEFECTS` (comma-separated names of `tests.broken_cms.defects.Defect`). With
`--preload` the module-wide swap of the QR-screen defects is made in the master, so every forked
worker inherits it.
"""

from __future__ import annotations

import os

from flask import Flask

from sim_cms.settings import load_cms_settings
from tests.broken_cms.app import create_broken_app
from tests.broken_cms.defects import defects_from_env
from tests.broken_cms.rotation import swap_due_clause

APP_SPEC = "tests.broken_cms.wsgi:create()"


def create() -> Flask:
    """The broken CMS from the environment."""
    defects = defects_from_env(os.environ)
    swap_due_clause(defects)
    return create_broken_app(load_cms_settings(), defects)
