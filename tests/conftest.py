"""Fixtures shared by the whole suite: databases, a manual clock and a fresh sim_trustly.

Database-backed tests (marker `db`) get a SQLite file in tmp_path, or, when
SCANPAY_TEST_DATABASE_URL names a PostgreSQL server (as .ci/run does), a fresh database
created on that server for the test and dropped after it.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from sim_trustly.app import create_app
from sim_trustly.settings import TrustlySettings
from simkit.clock import ManualClock
from simkit.db import normalise_url, sqlite_url

START = datetime(2026, 11, 25, 21, 0, 0, tzinfo=UTC)
ADMIN_TOKEN = "test-admin-token"
TEST_DB_ENV = "SCANPAY_TEST_DATABASE_URL"


def basic(access_id: str, access_key: str) -> str:
    """An HTTP Basic Authorization header value."""
    return "Basic " + base64.b64encode(f"{access_id}:{access_key}".encode()).decode()


DEMO_AUTH = basic("demo-access-id", "demo-access-key")


class DatabaseFactory:
    """Makes fresh, empty databases: SQLite files, or PostgreSQL databases on the test server."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp = tmp_path
        self._server = os.environ.get(TEST_DB_ENV)
        self._created: list[str] = []

    @property
    def backend(self) -> str:
        """'postgresql' when the PostgreSQL server is in use, else 'sqlite'."""
        return "postgresql" if self._server else "sqlite"

    def new(self, label: str = "db") -> str:
        """The URL of a new empty database."""
        if not self._server:
            return sqlite_url(str(self._tmp / f"{label}-{uuid.uuid4().hex[:8]}.db"))
        name = f"scanpay_t_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}"')
        self._created.append(name)
        return make_url(normalise_url(self._server)).set(database=name).render_as_string(
            hide_password=False
        )

    def _admin(self, statement: str) -> None:
        assert self._server is not None
        engine = create_engine(normalise_url(self._server), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(statement))
        engine.dispose()

    def drop_all(self) -> None:
        """Drop every database this factory created."""
        for name in self._created:
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def databases(tmp_path: Path) -> Iterator[DatabaseFactory]:
    """A factory of fresh databases for this test (dropped afterwards on PostgreSQL)."""
    factory = DatabaseFactory(tmp_path)
    yield factory
    factory.drop_all()


@pytest.fixture
def clock() -> ManualClock:
    """A manual clock frozen at START."""
    return ManualClock(start=START)


TrustlyFactory = Callable[..., Flask]


@pytest.fixture
def make_trustly(databases: DatabaseFactory, clock: ManualClock) -> Iterator[TrustlyFactory]:
    """Build sim_trustly on a fresh database with the test clock; keyword args override settings."""
    apps: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        values: dict[str, Any] = {"database_url": databases.new("trustly"),
                                  "admin_token": ADMIN_TOKEN}
        values.update(overrides)
        app = create_app(TrustlySettings(**values), clock=clock)
        app.testing = True
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["sim_trustly"].close()


@pytest.fixture
def trustly(make_trustly: TrustlyFactory) -> Flask:
    """sim_trustly with default settings and the control API on."""
    return make_trustly()


@pytest.fixture
def client(trustly: Flask) -> FlaskClient:
    """A test client of `trustly`."""
    return trustly.test_client()


CMS_AUTH = basic("tpas-client", "tpas-secret")
# A client granted every CWS scope, added to the demo clients of `make_cms`: tests of what an
# endpoint does use it (`cms_bearer`); which client may call what is tests/api/test_cms_scopes.py.
CMS_TEST_CLIENT = ("test-all-scopes", "test-all-scopes-secret")
CmsFactory = Callable[..., Flask]


def cms_test_clients() -> tuple[Any, ...]:
    """The `clients` of a test CMS: the demo clients plus `CMS_TEST_CLIENT` (every scope)."""
    from sim_cms.scopes import SCOPES
    from sim_cms.settings import DEMO_CLIENT, DEMO_DESK_CLIENT, ClientConfig

    return (DEMO_CLIENT, DEMO_DESK_CLIENT, ClientConfig(*CMS_TEST_CLIENT, scopes=tuple(SCOPES)))


@pytest.fixture
def make_cms(
    databases: DatabaseFactory, clock: ManualClock, make_trustly: TrustlyFactory
) -> Iterator[CmsFactory]:
    """Build sim_cms on a fresh database with the test clock.

    `with_trustly=True` wires it to an in-process sim_trustly (same clock) over
    httpx.WSGITransport; other keyword args override CmsSettings fields.
    """
    import httpx

    from sim_cms.app import create_app as create_cms
    from sim_cms.settings import CmsSettings

    apps: list[Flask] = []

    def build(*, with_trustly: bool = False, **overrides: Any) -> Flask:
        transport = None
        if with_trustly:
            transport = httpx.WSGITransport(app=make_trustly())
        values: dict[str, Any] = {"database_url": databases.new("cms"),
                                  "admin_token": ADMIN_TOKEN,
                                  "clients": cms_test_clients()}
        values.update(overrides)
        app = create_cms(CmsSettings(**values), clock=clock, trustly_transport=transport)
        app.testing = True
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["sim_cms"].close()


@pytest.fixture
def cms(make_cms: CmsFactory) -> Flask:
    """sim_cms with the demo casino and the control API on (no Trustly wired)."""
    return make_cms()


@pytest.fixture
def cms_client(cms: Flask) -> FlaskClient:
    """A test client of `cms`."""
    return cms.test_client()


def cms_bearer(client: FlaskClient) -> dict[str, str]:
    """Headers with a fresh access token granted every scope (`CMS_TEST_CLIENT`)."""
    response = client.post("/cws/v1/oauth/token", data={"grant_type": "client_credentials"},
                           headers={"Authorization": basic(*CMS_TEST_CLIENT)})
    assert response.status_code == 200, response.get_data(as_text=True)
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


class LateWSGITransport:
    """An httpx transport to a WSGI app set after the transport is made.

    The two sims need each other (TPAS calls the CMS, the CMS asks Trustly for QR codes), so
    one of them must be given its transport before the other app exists.
    """

    def __init__(self) -> None:
        self.app: Flask | None = None

    def handle_request(self, request: Any) -> Any:
        import httpx

        assert self.app is not None, "LateWSGITransport used before its app was set"
        return httpx.WSGITransport(app=self.app).handle_request(request)

    def __enter__(self) -> LateWSGITransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: each request gets its own WSGITransport."""


@pytest.fixture
def pay_pair(databases: DatabaseFactory, clock: ManualClock) -> Iterator[tuple[Flask, Flask]]:
    """`(trustly, cms)` wired both ways in-process on the test clock, control APIs on."""
    import httpx

    from sim_cms.app import create_app as create_cms
    from sim_cms.settings import CmsSettings

    to_cms = LateWSGITransport()
    trustly_app = create_app(TrustlySettings(database_url=databases.new("trustly"),
                                             admin_token=ADMIN_TOKEN),
                             clock=clock, cms_transport=to_cms)
    cms_app = create_cms(CmsSettings(database_url=databases.new("cms"), admin_token=ADMIN_TOKEN,
                                     clients=cms_test_clients()),
                         clock=clock, trustly_transport=httpx.WSGITransport(app=trustly_app))
    to_cms.app = cms_app
    trustly_app.testing = cms_app.testing = True
    yield trustly_app, cms_app
    for app, key in ((trustly_app, "sim_trustly"), (cms_app, "sim_cms")):
        app.extensions[key].close()
