"""Schemathesis fuzzes every CWS operation of the published document against the real app.

One in-process sim_cms (SQLite, wired to an in-process sim_trustly so QR acquisition works)
serves the whole module; every operation gets at least 100 generated requests, valid and
invalid, and every default check must pass: no 5xx, only documented statuses, headers and
bodies that match the document, invalid input refused, valid input not refused as malformed.
Exceptions propagate out of the app, so a defect shows its traceback here.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.config import SchemathesisConfig
from schemathesis.hooks import HookContext

from sim_cms.app import create_app as create_cms
from sim_cms.models import QrDisplay
from sim_cms.openapi import TOKEN_URL, build_document
from sim_cms.settings import CmsSettings
from sim_trustly.app import create_app as create_trustly
from sim_trustly.settings import TrustlySettings
from simkit.clock import ManualClock
from tests.conftest import CMS_AUTH, START, DatabaseFactory, cms_bearer, cms_test_clients

# A well-formed funding that the casino refuses (the QR was never shown on that EGM, the meter
# or the daily limit is full) is a decided 422, not a malformed request: valid data may get it.
# The token request is form-encoded: a negative case whose violation is a non-string value
# (`{"": null}`) reaches the server as the string "null", a well-formed parameter RFC 6749
# tells a server to ignore, so a 200 there is the encoding's doing, not an accepted invalid
# request. Invalid token requests are tested one by one in tests/api/test_cms_oauth.py.
CONFIG = SchemathesisConfig.from_dict({"operations": [{
    "include-path": "/cws/v1/fundings", "include-method": "POST",
    "checks": {"positive_data_acceptance": {
        "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429", "5xx"]}},
}, {
    "include-path": "/cws/v1/oauth/token", "include-method": "POST",
    "checks": {"negative_data_rejection": {
        "expected-statuses": ["200", "400", "401", "403", "404", "405", "406", "409", "415",
                              "422", "428", "429", "5xx"]}},
}]})


def _integer_literals(value: Any) -> Any:
    """`2000.0` -> `2000`, recursively.

    JSON Schema counts 2000.0 as an integer, so schemathesis sends it for `type: integer`; the
    API deliberately takes money only as JSON integer literals (docs/architecture.md §6
    (Money), documented on each field) and answers 400 to a float, a rule a schema cannot
    state. Valid data is sent in the form the API requires; negative cases keep their
    non-integral floats.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integer_literals(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integer_literals(item) for item in value]
    return value


def map_body(context: HookContext, body: Any) -> Any:
    """Schemathesis hook: send integers as integer literals (see `_integer_literals`)."""
    del context
    return _integer_literals(body)


class _AppSlot:
    """A WSGI app that forwards to the module's sim_cms, so the schema can be bound at import
    time (schemathesis parametrizes then) while the app itself is built by a fixture."""

    app: Flask | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None, "the cms_app fixture binds the app"
        return self.app(environ, start_response)


APP = _AppSlot()
schema = schemathesis.openapi.from_dict(build_document(), config=CONFIG)
schema.app = APP
schema.hook(map_body)


def _display_example_qr(app: Flask) -> None:
    """Show the documented example's QR on its EGM, so the example funding is applied (201)."""
    operation = build_document()["paths"]["/cws/v1/fundings"]["post"]
    example = operation["requestBody"]["content"]["application/json"]["example"]
    ctx = app.extensions["sim_cms"]
    now = ctx.clock.now()
    with ctx.db.write() as session:
        session.add(QrDisplay(qr_token_id=example["qrTokenId"], egm_id=example["egmId"],
                              url=f"https://trustly.example/scan/{example['qrTokenId']}",
                              token="not-a-jwt", displayed_at=now, rotates_at=now,
                              expires_at=now + timedelta(minutes=5)))


@pytest.fixture(scope="module")
def cms_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """sim_cms on SQLite, Trustly in process, a frozen clock (tokens never expire)."""
    databases = DatabaseFactory(Path(tmp_path_factory.mktemp("schemathesis")))
    clock = ManualClock(start=START)
    trustly = create_trustly(TrustlySettings(database_url=databases.new("trustly")),
                             clock=clock)
    # The fuzzer sends wrong credentials on purpose, again and again: no lockout here
    # (tests/api/test_cms_token_lockout.py tests it).
    app = create_cms(CmsSettings(database_url=databases.new("cms"), clients=cms_test_clients(),
                                 client_lockout_threshold=1_000_000),
                     clock=clock,
                     trustly_transport=httpx.WSGITransport(app=trustly))
    app.config["PROPAGATE_EXCEPTIONS"] = True
    _display_example_qr(app)
    APP.app = app
    yield app
    APP.app = None
    app.extensions["sim_cms"].close()
    trustly.extensions["sim_trustly"].close()
    databases.drop_all()


@pytest.fixture(scope="module")
def bearer(cms_app: Flask) -> dict[str, str]:
    """A Bearer token of the demo TPAS client, valid for the whole run."""
    return cms_bearer(cms_app.test_client())


@schema.parametrize()
@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_every_operation_conforms_to_the_document(case: Case[Any], bearer: dict[str, str]) -> None:
    headers = {"Authorization": CMS_AUTH} if case.path == TOKEN_URL else bearer
    case.call_and_validate(headers=headers)
