"""Build the broken CMS: `sim_cms.app.create_app`, then the chosen defects swapped in.

The product is built first, untouched (migrations, seed, control API, journal, faults), so
the broken CMS is still a full partner CMS with hooks; only the parts a defect is about are
replaced afterwards, in this app's own view table. With no defects it *is* the product.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

from flask import Flask

from sim_cms.app import create_app
from sim_cms.settings import CmsSettings
from simkit.clock import Clock
from simkit.db import Database
from tests.broken_cms.defects import FUNDING_DEFECTS, Defect
from tests.broken_cms.funding import make_funding_view

EXTENSION = "broken_cms"
FUNDING_ENDPOINT = "cms_funding_api.post_funding"


def create_broken_app(
    settings: CmsSettings, defects: frozenset[Defect], *, clock: Clock | None = None,
    database: Database | None = None, trustly_transport: Any = None,
) -> Flask:
    """sim_cms with `defects` planted (the QR-screen defects also need
    `rotation.swap_due_clause`).

    The defects are kept in `app.extensions["broken_cms"]` so a test can see what it runs.
    """
    app = create_app(settings, clock=clock, database=database,
                     trustly_transport=trustly_transport)
    assert FUNDING_ENDPOINT in app.view_functions, "sim_cms renamed its funding view"
    funding_defects = defects & FUNDING_DEFECTS
    if funding_defects:
        plant_funding_view(app, funding_defects)
    app.extensions[EXTENSION] = defects
    return app


def plant_funding_view(app: Flask, defects: frozenset[Defect]) -> None:
    """Make every funding go through the broken view deciding with `defects`.

    The product may answer fundings below Flask (a WSGI fast path in front of the app, which
    falls through to the Flask view for anything it does not decide); that layer is taken
    off, so no funding bypasses the planted defect and Flask's view answers them all.
    """
    app.view_functions[FUNDING_ENDPOINT] = make_funding_view(defects)
    app.wsgi_app = MethodType(Flask.wsgi_app, app)  # type: ignore[method-assign]
