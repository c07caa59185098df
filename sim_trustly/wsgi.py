"""WSGI entry point for production servers: `gunicorn --preload 'sim_trustly.wsgi:create()'`.

Settings come from the environment (`SCANPAY_TRUSTLY_DATABASE_URL`, `SCANPAY_CONFIG`,
`SCANPAY_ADMIN_TOKEN`, `SCANPAY_CONTROLLABLE_CLOCK`). With `--preload` the migrations and
seeding run once in the master before the workers fork.
"""

from __future__ import annotations

from flask import Flask

from sim_trustly.app import create_app
from sim_trustly.settings import load_trustly_settings


def create() -> Flask:
    """Build sim_trustly from the environment."""
    return create_app(load_trustly_settings())
