"""TPAS's socket transport: keep-alive reuse, and every network failure as the httpx error
TPAS treats as an unknown outcome. A scripted server on 127.0.0.1 plays the CMS."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from simkit.http_transport import StdlibTransport

BODY = b'{"status":"APPLIED"}'
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
          b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))


class ScriptedServer:
    """Accepts connections; on each request does the next scripted action:
    `answer`, `answer_then_close` (closes the idle connection afterwards), `close` (no answer),
    or `silent` (reads the request and never answers)."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.accepted = 0
        self.requests: list[bytes] = []
        # Which accepted connection carried each request: a stray connection from elsewhere
        # on the machine (a port reused after another test) must not count as the client's.
        self.carried_on: list[int] = []
        self.closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.script:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._talk, args=(connection, self.accepted),
                             daemon=True).start()

    def _talk(self, connection: socket.socket, number: int) -> None:
        with connection:
            while self.script:
                request = self._read_request(connection)
                if request is None:
                    return
                self.requests.append(request)
                self.carried_on.append(number)
                action = self.script.pop(0)
                if action == "silent":
                    self._done.wait(10)
                    return
                if action == "close":
                    return
                connection.sendall(ANSWER)
                if action == "answer_then_close":
                    connection.close()
                    self.closed.set()
                    return

    @staticmethod
    def _read_request(connection: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += connection.recv(65536)
        return head + b"\r\n\r\n" + body

    def stop(self) -> None:
        self._done.set()
        self._listener.close()


@pytest.fixture
def serve() -> Iterator[list[ScriptedServer]]:
    servers: list[ScriptedServer] = []
    yield servers
    for server in servers:
        server.stop()


def client(server: ScriptedServer, read_s: float = 5.0) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{server.port}", transport=StdlibTransport(),
                        timeout=httpx.Timeout(read_s, connect=2.0))


def test_requests_reuse_one_kept_alive_connection_and_bodies_arrive_whole(
    serve: list[ScriptedServer],
) -> None:
    server = ScriptedServer(["answer", "answer"])
    serve.append(server)
    with client(server) as http:
        assert http.get("/cws/v1/limits/u").json() == {"status": "APPLIED"}
        posted = http.post("/cws/v1/fundings", json={"transactionId": "tx-1", "amount": 2000})
    assert posted.status_code == 200 and posted.headers["content-type"] == "application/json"
    assert server.carried_on == [server.carried_on[0]] * 2  # both on one connection
    assert server.requests[1].startswith(b"POST /cws/v1/fundings HTTP/1.1\r\n")
    assert server.requests[1].endswith(b'{"transactionId":"tx-1","amount":2000}')


def test_an_idle_connection_the_server_closed_is_replaced_not_failed(
    serve: list[ScriptedServer],
) -> None:
    server = ScriptedServer(["answer_then_close", "answer"])
    serve.append(server)
    with client(server) as http:
        assert http.get("/a").status_code == 200
        assert server.closed.wait(5)
        assert http.get("/b").status_code == 200
    assert len(set(server.carried_on)) == 2  # the second request on a new connection


def test_a_connection_closed_without_an_answer_is_a_remote_protocol_error(
    serve: list[ScriptedServer],
) -> None:
    server = ScriptedServer(["close"])
    serve.append(server)
    with client(server) as http, pytest.raises(httpx.RemoteProtocolError):
        http.post("/cws/v1/fundings", json={})


def test_an_answer_slower_than_the_read_timeout_is_a_read_timeout(
    serve: list[ScriptedServer],
) -> None:
    server = ScriptedServer(["silent"])
    serve.append(server)
    with client(server, read_s=0.2) as http, pytest.raises(httpx.ReadTimeout):
        http.post("/cws/v1/fundings", json={})


def test_nobody_listening_is_a_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", transport=StdlibTransport()) as http, \
            pytest.raises(httpx.ConnectError):
        http.get("/")


def test_connections_are_reused_in_a_process_with_many_open_descriptors(
    serve: list[ScriptedServer],
) -> None:
    """A busy server holds more than 1,024 descriptors; keep-alive must still work there."""
    import os
    padding = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        server = ScriptedServer(["answer", "answer"])
        serve.append(server)
        with client(server) as http:
            assert http.get("/a").status_code == 200
            assert http.get("/b").status_code == 200
        assert server.carried_on == [server.carried_on[0]] * 2
    finally:
        for fd in padding:
            os.close(fd)
