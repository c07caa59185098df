"""The QR Code API's common case answered on the server's event loop, without a thread.

Behind the production front (simkit/rsgi_front.py) every request is handed to a thread and
back, which costs more than issuing a token from a cached credential. `TokenFastPath.answer_inline`
answers that case on the event loop instead, and only when nothing in it can wait (no database
read, no controllable clock, no stale copy of the fault rules). These tests drive the front with
the fake RSGI scope of tests/unit/test_rsgi_front.py and count what reaches the threads.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from flask import Flask

from sim_trustly.app import create_app
from sim_trustly.auth_service.fast_path import TOKEN_PATH, TokenFastPath
from sim_trustly.settings import TrustlySettings
from simkit.clock import ManualClock
from simkit.rsgi_front import RsgiFront
from tests.api.test_qr_token_api import BODY, issued_count
from tests.conftest import ADMIN_TOKEN, DEMO_AUTH, DatabaseFactory, basic
from tests.unit.test_rsgi_front import Proto, Scope

pytestmark = pytest.mark.db


class Served:
    """A sim_trustly app behind the front, counting the requests that reached a thread."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.threaded = 0
        fast_path = app.wsgi_app
        assert isinstance(fast_path, TokenFastPath)
        self.front = RsgiFront(self._counting, max_body_bytes=16 * 1024, threads=2,
                               body_timeout_s=5.0, inline=fast_path.answer_inline)
        self.loop = asyncio.new_event_loop()  # one loop for all calls, as a server has

    def _counting(self, environ: dict[str, Any],
                  start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.threaded += 1
        return self.app(environ, start_response)

    def call(self, method: str, path: str, body: bytes, headers: dict[str, str]
             ) -> tuple[int, dict[str, str], bytes]:
        scope = Scope(method=method, path=path, query_string="", headers_list=[
            (name.lower(), value) for name, value in
            {**headers, "content-length": str(len(body))}.items()])
        proto = Proto(chunks=[body])
        self.loop.run_until_complete(self.front.__rsgi__(scope, proto))
        assert proto.response is not None
        status, answer_headers, answer = proto.response
        return status, dict(answer_headers), answer

    def token(self, auth: str = DEMO_AUTH) -> tuple[int, dict[str, str], bytes]:
        return self.call("POST", TOKEN_PATH, json.dumps(BODY).encode(),
                         {"Authorization": auth, "Content-Type": "application/json"})


@pytest.fixture
def served(databases: DatabaseFactory) -> Iterator[Served]:
    app = create_app(TrustlySettings(database_url=databases.new("inline"),
                                     admin_token=ADMIN_TOKEN))  # the system clock
    served = Served(app)
    yield served
    served.loop.close()
    app.extensions["sim_trustly"].close()


def test_a_cached_credential_is_answered_without_a_thread(served: Served) -> None:
    before = issued_count(served.app)
    first = served.token()
    assert first[0] == 200 and served.threaded == 1  # the credential was read on a thread
    second = served.token()
    assert second[0] == 200 and served.threaded == 1  # answered on the event loop
    assert list(json.loads(second[2])) == ["expiresAt", "token", "url"]
    assert second[1]["Content-Type"] == "application/json"
    assert json.loads(second[2])["token"] != json.loads(first[2])["token"]
    assert issued_count(served.app) == before + 2  # both tokens stored for the phone
    journal = served.call("GET", "/_sim/journal", b"", {"Authorization": f"Bearer {ADMIN_TOKEN}"})
    correlation_ids = {entry["correlationId"] for entry in json.loads(journal[2])["entries"]}
    assert second[1]["X-Correlation-Id"] in correlation_ids  # journaled like any other


def test_a_wrong_key_goes_to_a_thread_and_is_refused(served: Served) -> None:
    served.token()  # the credential is cached now
    refused = served.token(basic("demo-access-id", "not-the-key"))
    assert refused[0] == 401 and served.threaded == 2


def test_a_fault_rule_on_the_path_is_never_bypassed(served: Served) -> None:
    served.token()
    rule = {"method": "POST", "path": TOKEN_PATH, "action": "status", "status": 503}
    added = served.call("POST", "/_sim/faults", json.dumps(rule).encode(), {
        "Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"})
    assert added[0] == 201
    threaded = served.threaded
    faulted = served.token()
    assert faulted[0] == 503 and served.threaded == threaded + 1


def test_a_controllable_clock_is_never_read_on_the_event_loop(
    databases: DatabaseFactory, clock: ManualClock,
) -> None:
    app = create_app(TrustlySettings(database_url=databases.new("manual"),
                                     admin_token=ADMIN_TOKEN), clock=clock)
    served = Served(app)
    for _ in range(3):
        assert served.token()[0] == 200
    assert served.threaded == 3
    served.loop.close()
    app.extensions["sim_trustly"].close()
