"""Clients too slow to send their body do not take a sim offline (issue 10, item 6).

Each sim runs under docker-compose.yml's own command and environment (`tests.e2e.compose_local`,
SQLite databases in place of the `postgres` service, a 2 s body deadline in place of the
default 10 s so the test stays short). Forty connections send a request's headers with
`Content-Length: 100` and never the body; ordinary requests are still answered within a
second, and each slow connection is answered 408 and closed once the deadline passes.

The production serving's front also carries out the fault plan's `drop`: the client sees its
connection closed without any response, and the next request is served.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from simkit.clock import monotonic
from simkit.rsgi_front import BODY_TIMEOUT_ENV
from tests.e2e.compose_local import ComposeServer, LocalCompose
from tests.e2e.pay_stack import poll_pause

pytestmark = pytest.mark.slow

SLOW_CLIENTS = 40
BODY_TIMEOUT_S = 2.0
ANSWER_WITHIN_S = 1.0
ADMIN = {"Authorization": "Bearer local-admin-token"}  # compose's default admin token
QR_PATH = "/auth-service/api/oauth2/qrcode/token"
QR_BODY = {"merchantId": "demo-merchant", "egmId": "EGM-001"}
DEMO_MERCHANT = ("demo-access-id", "demo-access-key")
CMS_TOKEN_PATH = "/cws/v1/oauth/token"
CMS_CLIENT = ("tpas-client", "tpas-secret")


def _ordinary_post(name: str, base: str) -> httpx.Response:
    """The sim's everyday authenticated POST: a QR token, or a CMS access token."""
    if name == "trustly":
        return httpx.post(base + QR_PATH, json=QR_BODY, auth=DEMO_MERCHANT, timeout=5)
    return httpx.post(base + CMS_TOKEN_PATH, data={"grant_type": "client_credentials"},
                      auth=CMS_CLIENT, timeout=5)


@pytest.fixture(params=["trustly", "cms"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(service name, base URL) of one sim under the compose file's command."""
    name: str = request.param
    databases = {db: f"sqlite:///{tmp_path / db}.db" for db in ("trustly", "cms")}
    service = LocalCompose(tmp_path, databases).service(name)
    service = replace(service, env={**service.env, BODY_TIMEOUT_ENV: str(BODY_TIMEOUT_S)})
    port = int(service.argv[service.argv.index("--port") + 1])
    server = ComposeServer(service, port, tmp_path)
    server.start()
    try:
        yield name, server.base
    finally:
        server.stop()


def _slow_client(port: int, path: str) -> socket.socket:
    """A connection that sent a POST's headers, announcing 100 bytes of body, and no body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                 "\r\nContent-Length: 100\r\n\r\n".encode())
    return sock


def _timed(call: Any) -> tuple[httpx.Response, float]:
    began = monotonic()
    response = call()
    return response, monotonic() - began


def _answer_and_close(sock: socket.socket, deadline: float) -> bytes:
    """Everything the server sent on `sock` until it closed it (bounded by `deadline`)."""
    received = b""
    while (left := deadline - monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            break
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"connection still open after the deadline; got {received[:80]!r}")


def test_slow_clients_leave_ordinary_requests_answered_and_are_cut_off(
        served: tuple[str, str]) -> None:
    name, base = served
    port = int(base.rsplit(":", 1)[1])
    path = QR_PATH if name == "trustly" else CMS_TOKEN_PATH
    slow = [_slow_client(port, path) for _ in range(SLOW_CLIENTS)]
    began = monotonic()
    try:
        poll_pause(0.3)  # every slow request has reached the server and waits for its body
        spec, spec_s = _timed(lambda: httpx.get(base + "/openapi.json", timeout=5))
        post, post_s = _timed(lambda: _ordinary_post(name, base))
        assert spec.status_code == 200 and spec_s < ANSWER_WITHIN_S, spec_s
        assert post.status_code == 200, post.text
        assert post_s < ANSWER_WITHIN_S, post_s
        deadline = began + BODY_TIMEOUT_S + 5.0
        answers = [_answer_and_close(sock, deadline) for sock in slow]
    finally:
        for sock in slow:
            sock.close()
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), {a[:40] for a in answers}
    assert monotonic() - began >= BODY_TIMEOUT_S  # cut off by the deadline, not at once


def test_a_drop_fault_closes_the_connection_without_a_response(
        served: tuple[str, str]) -> None:
    name, base = served
    path = QR_PATH if name == "trustly" else CMS_TOKEN_PATH
    rule = {"method": "POST", "path": path, "action": "drop", "times": 1}
    added = httpx.post(base + "/_sim/faults", json=rule, headers=ADMIN, timeout=5)
    assert added.status_code == 201, added.text
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        _ordinary_post(name, base)
    assert _ordinary_post(name, base).status_code == 200  # the fault fired once; served again
