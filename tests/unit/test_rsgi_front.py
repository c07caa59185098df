"""simkit.rsgi_front in process: what the WSGI app is handed, and what the client gets back.

A fake RSGI scope and protocol stand in for granian; tests/e2e/test_slow_clients.py runs the
front under granian itself, with slow clients and a dropped connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from simkit.faults import ConnectionDropped
from simkit.rsgi_front import RsgiFront

CAP = 64


@dataclass
class Scope:
    """The attributes of granian's RSGI scope the front reads."""

    method: str = "POST"
    path: str = "/auth"
    query_string: str = "a=1"
    headers_list: list[tuple[str, str]] = field(default_factory=list)
    proto: str = "http"
    http_version: str = "1.1"
    scheme: str = "http"
    server: str = "127.0.0.1:8710"
    client: str = "127.0.0.1:50000"

    @property
    def headers(self) -> Scope:
        return self

    def items(self) -> list[tuple[str, str]]:
        return list(self.headers_list)


@dataclass
class Proto:
    """A body in chunks, and the one response the front gives."""

    chunks: list[bytes] = field(default_factory=list)
    reads: int = 0
    response: tuple[int, list[tuple[str, str]], bytes] | None = None

    async def __call__(self) -> bytes:
        self.reads += 1
        return b"".join(self.chunks)

    async def _iterate(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.reads += 1
            yield chunk

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        assert self.response is None, "answered twice"
        self.response = (status, headers, body)


def _recording_app(seen: list[dict[str, Any]]) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["body"] = environ["wsgi.input"].read()
        seen.append(environ)
        start_response("201 Created", [("Content-Type", "application/json")])
        return [b'{"ok":', b"true}"]
    return app


def _serve(app: Callable[..., Iterable[bytes]], scope: Scope, proto: Proto) -> None:
    front = RsgiFront(app, max_body_bytes=CAP, threads=2, body_timeout_s=5.0)
    asyncio.run(front.__rsgi__(scope, proto))


def test_the_app_gets_the_whole_body_and_a_wsgi_environ_and_its_answer_goes_back() -> None:
    seen: list[dict[str, Any]] = []
    scope = Scope(headers_list=[("content-type", "application/json"), ("content-length", "7"),
                                ("x-tag", "a"), ("x-tag", "b"), ("authorization", "Basic x")])
    proto = Proto(chunks=[b'{"a":', b"1}"])
    _serve(_recording_app(seen), scope, proto)
    environ = seen[0]
    assert environ["body"] == b'{"a":1}'
    assert (environ["REQUEST_METHOD"], environ["PATH_INFO"], environ["QUERY_STRING"]) == (
        "POST", "/auth", "a=1")
    assert (environ["CONTENT_TYPE"], environ["CONTENT_LENGTH"]) == ("application/json", "7")
    assert environ["HTTP_X_TAG"] == "a,b" and environ["HTTP_AUTHORIZATION"] == "Basic x"
    assert (environ["REMOTE_ADDR"], environ["SERVER_PORT"]) == ("127.0.0.1", "8710")
    assert proto.response == (201, [("Content-Type", "application/json")], b'{"ok":true}')


def test_a_body_declared_larger_than_the_cap_is_not_read_and_the_app_sees_its_length() -> None:
    seen: list[dict[str, Any]] = []
    scope = Scope(headers_list=[("content-length", str(CAP + 1))])
    proto = Proto(chunks=[b"x" * (CAP + 1)])
    _serve(_recording_app(seen), scope, proto)
    assert proto.reads == 0
    assert seen[0]["CONTENT_LENGTH"] == str(CAP + 1) and seen[0]["body"] == b""


def test_a_chunked_body_is_read_no_further_than_one_byte_past_the_cap() -> None:
    seen: list[dict[str, Any]] = []
    scope = Scope(headers_list=[("transfer-encoding", "chunked")])
    proto = Proto(chunks=[b"x" * 40, b"y" * 40, b"z" * 40])
    _serve(_recording_app(seen), scope, proto)
    assert proto.reads == 2  # the third chunk is never asked for
    assert seen[0]["CONTENT_LENGTH"] == str(CAP + 1) and len(seen[0]["body"]) == CAP + 1


def test_a_request_without_a_body_is_not_read() -> None:
    seen: list[dict[str, Any]] = []
    proto = Proto()
    _serve(_recording_app(seen), Scope(method="GET"), proto)
    assert proto.reads == 0 and seen[0]["body"] == b""
    assert proto.response is not None and proto.response[0] == 201


def test_a_drop_with_no_connection_to_cut_leaves_the_server_to_answer() -> None:
    def dropping(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        raise ConnectionDropped("fault injection dropped the connection")

    proto = Proto()
    with pytest.raises(ConnectionDropped):  # granian then answers its own 500
        _serve(dropping, Scope(method="GET", client="10.9.9.9:1"), proto)
    assert proto.response is None
