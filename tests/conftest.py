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

from sim_trustly.app import MIGRATIONS as TRUSTLY_MIGRATIONS
from sim_trustly.app import create_app
from sim_trustly.settings import TrustlySettings
from simkit.clock import ManualClock
from simkit.db import sqlite_url
from tests.db_templates import TEMPLATES, database_url

START = datetime(2026, 11, 25, 21, 0, 0, tzinfo=UTC)
ADMIN_TOKEN = "test-admin-token"
TEST_DB_ENV = "SCANPAY_TEST_DATABASE_URL"
# sim_cms's migrations package by path: this module imports sim_cms only in the fixtures using it.
CMS_MIGRATIONS = Path(__file__).resolve().parent.parent / "sim_cms" / "migrations"


def basic(access_id: str, access_key: str) -> str:
    """An HTTP Basic Authorization header value."""
    return "Basic " + base64.b64encode(f"{access_id}:{access_key}".encode()).decode()


DEMO_AUTH = basic("demo-access-id", "demo-access-key")


class DatabaseFactory:
    """Makes fresh databases: SQLite files, or PostgreSQL databases on the test server.

    `new` gives an empty database; `migrated` gives one already at the head of a sim's
    migrations, copied from a template migrated once per session (tests/db_templates.py).
    Either way the database is the test's own and nothing has used it before.
    """

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
        return self._make(label, None)

    def migrated(self, migrations_dir: Path, label: str = "db") -> str:
        """The URL of a new database at the head of `migrations_dir`, never used before."""
        return self._make(label, migrations_dir)

    def _make(self, label: str, migrations_dir: Path | None) -> str:
        if not self._server:
            path = self._tmp / f"{label}-{uuid.uuid4().hex[:8]}.db"
            if migrations_dir is not None:
                TEMPLATES.sqlite.copy(migrations_dir, path)
            return sqlite_url(str(path))
        server = TEMPLATES.server(self._server)
        template = server.template(migrations_dir) if migrations_dir is not None else None
        name = f"scanpay_t_{uuid.uuid4().hex[:12]}"
        server.create(name, template=template)
        self._created.append(name)
        return database_url(self._server, name)

    def drop_all(self) -> None:
        """Drop every database this factory created (in the background, see db_templates)."""
        if self._server:
            server = TEMPLATES.server(self._server)
            for name in self._created:
                server.drop_later(name)
        self._created.clear()


@pytest.fixture(scope="session", autouse=True)
def _database_templates() -> Iterator[None]:
    """Drop the session's templates and wait for the queued drops when the session ends."""
    yield
    TEMPLATES.close()


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
        values: dict[str, Any] = {"admin_token": ADMIN_TOKEN, **overrides}
        if "database_url" not in values:
            values["database_url"] = databases.migrated(TRUSTLY_MIGRATIONS, "trustly")
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
        values: dict[str, Any] = {"admin_token": ADMIN_TOKEN, "clients": cms_test_clients(),
                                  **overrides}
        if "database_url" not in values:
            values["database_url"] = databases.migrated(CMS_MIGRATIONS, "cms")
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
    trustly_settings = TrustlySettings(
        database_url=databases.migrated(TRUSTLY_MIGRATIONS, "trustly"), admin_token=ADMIN_TOKEN)
    trustly_app = create_app(trustly_settings, clock=clock, cms_transport=to_cms)
    cms_app = create_cms(CmsSettings(database_url=databases.migrated(CMS_MIGRATIONS, "cms"),
                                     admin_token=ADMIN_TOKEN, clients=cms_test_clients()),
                         clock=clock, trustly_transport=httpx.WSGITransport(app=trustly_app))
    to_cms.app = cms_app
    trustly_app.testing = cms_app.testing = True
    yield trustly_app, cms_app
    for app, key in ((trustly_app, "sim_trustly"), (cms_app, "sim_cms")):
        app.extensions[key].close()
