"""A front for a sim's WSGI app under granian's RSGI interface: the request body is read on
the event loop, within a deadline and a size cap, before a thread of a bounded pool runs the
app.

Why: granian's WSGI interface hands a request to one of its blocking threads as soon as the
headers are in, and the app then blocks in `wsgi.input.read` until the body arrives. Forty
clients that sent headers with a Content-Length and then nothing held every thread of both
workers, and ordinary requests waited minutes (granian bounds the wait for headers, never for
a body). Here a slow body costs an idle coroutine, not a thread: a client that has not sent
all of its body within `body_timeout_s` of its headers is answered 408 and its connection
closed, and the app's threads only ever run requests that are complete. RSGI, granian's own
interface, is the cheapest way onto its event loop (ASGI's message dictionaries cost more).

What the app sees is the WSGI environ granian's WSGI interface builds, with the whole body in
`wsgi.input`. A body larger than `max_body_bytes` is not read (or read no further): the app
gets the declared length and answers 413 in its own error dialect, as it does for any
oversized body. Responses are buffered (the sims answer small JSON and HTML documents).

A fault that drops the connection (`simkit.faults`) raises `ConnectionDropped` out of the app,
as under any server that gives the app no socket; the front then shuts the client's
connection down, so the client sees it close with no response at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import queue
import socket
import sys
import threading
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from simkit.fast_path import InlineAnswer
from simkit.faults import ConnectionDropped

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

BODY_TIMEOUT_ENV = "SCANPAY_BODY_TIMEOUT_S"
THREADS_ENV = "SCANPAY_THREADS"
DEFAULT_BODY_TIMEOUT_S = 10.0
DEFAULT_THREADS = 8
DEFAULT_MAX_BODY_BYTES = 16 * 1024  # the sims' own default `max_body_bytes`

_TIMEOUT_BODY = b'{"code":"REQUEST_TIMEOUT","message":"the request body did not arrive in time"}'
_TIMEOUT_HEADERS = [("content-type", "application/json"), ("connection", "close")]


@dataclass
class _Answer:
    """What the WSGI app answered: status line, headers and the whole body."""

    status: str = "500 Internal Server Error"
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)


def env_number(name: str, default: float) -> float:
    """A positive number from the environment, else `default`; anything else refuses."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = float(raw)
    if not value > 0:
        raise ValueError(f"{name} must be a positive number, not {raw!r}")
    return value


class _Pool:
    """Threads that run blocking calls for the event loop.

    Leaner than `loop.run_in_executor`, whose thread hops cost more than the sims' hot
    endpoints themselves: one queue put hands a call over; results come back through one
    list, and the loop is woken (a write to its self-pipe) only when it is not already due to
    collect them, so under load one wake-up settles many requests. Threads start on first
    use, in the process that serves (never before a fork).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._calls: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self._lock = threading.Lock()
        self._wake_due = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def run(self, call: Callable[[Any], Any], arg: Any) -> asyncio.Future[Any]:
        """A future of `call(arg)`, run on a pool thread."""
        if self._pid != os.getpid():
            self._start()
        loop = self._loop
        assert loop is not None
        future = loop.create_future()
        self._calls.put((future, call, arg))
        return future

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._loop = asyncio.get_running_loop()
            for n in range(self.size):
                threading.Thread(target=self._serve, name=f"wsgi-{n}", daemon=True).start()
            self._pid = os.getpid()

    def _serve(self) -> None:
        calls, done, lock = self._calls, self._done, self._lock
        loop = self._loop
        assert loop is not None
        while True:
            future, call, arg = calls.get()
            outcome: tuple[asyncio.Future[Any], Any, BaseException | None]
            try:
                outcome = (future, call(arg), None)
            except BaseException as exc:  # handed to the awaiting coroutine, which re-raises
                outcome = (future, None, exc)
            with lock:
                done.append(outcome)
                wake, self._wake_due = not self._wake_due, True
            if wake:
                loop.call_soon_threadsafe(self._collect)

    def _collect(self) -> None:
        with self._lock:
            finished, self._done[:] = list(self._done), []
            self._wake_due = False
        for future, result, exc in finished:
            if future.done():
                continue  # the request's coroutine is gone (the client went away)
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)


class _Deadlines:
    """Body reads that must end within `limit_s`, checked by one sweep per event loop.

    Cheaper than a timer per request (`asyncio.timeout`): a read is one dictionary entry, and
    one task per loop cancels those past their deadline every `limit_s` / 4 (at most 1 s), so a
    read ends between `limit_s` and `limit_s` plus one sweep after it began.
    """

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._every_s = min(1.0, limit_s / 4)
        self._reads: dict[asyncio.Task[Any], float] = {}
        self._sweeps: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    async def bounded(self, read: Coroutine[Any, Any, bytes]) -> bytes | None:
        """What `read` returns, or None when its deadline passed first."""
        task = asyncio.current_task()
        assert task is not None
        loop = task.get_loop()
        if loop not in self._sweeps:
            self._sweeps[loop] = loop.create_task(self._sweep())
        self._reads[task] = loop.time() + self.limit_s
        try:
            return await read
        except asyncio.CancelledError:
            if self._reads.pop(task, None) is not None:
                raise  # cancelled by someone else (shutdown, the client gone)
            task.uncancel()
            return None
        finally:
            self._reads.pop(task, None)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._every_s)
            now = loop.time()
            for task in [t for t, deadline in self._reads.items() if deadline <= now]:
                del self._reads[task]  # marks the cancellation as the deadline's
                task.cancel()


class RsgiFront:
    """An RSGI app that serves `app` (WSGI) from `threads` threads, bodies read first."""

    def __init__(self, app: WsgiApp, *, max_body_bytes: int, threads: int | None = None,
                 body_timeout_s: float | None = None,
                 inline: Callable[[dict[str, Any]], InlineAnswer | None] | None = None) -> None:
        self.app = app
        self.inline = inline
        self.max_body_bytes = max_body_bytes
        self.threads = threads or int(env_number(THREADS_ENV, DEFAULT_THREADS))
        self.body_timeout_s = body_timeout_s or env_number(BODY_TIMEOUT_ENV,
                                                           DEFAULT_BODY_TIMEOUT_S)
        self._pool = _Pool(self.threads)
        self._deadlines = _Deadlines(self.body_timeout_s)
        self._base_environ: dict[str, Any] = {
            "GATEWAY_INTERFACE": "CGI/1.1", "SCRIPT_NAME": "", "wsgi.version": (1, 0),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
            "wsgi.run_once": False, "wsgi.input_terminated": True,
        }

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return  # websockets: refused by not accepting them
        environ = self._environ(scope)
        declared = environ.get("CONTENT_LENGTH", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            body = b""  # not read at all: the app answers 413 from the declared length
        elif declared in ("", "0") and "HTTP_TRANSFER_ENCODING" not in environ:
            body = b""  # no body comes
        else:
            read = await self._deadlines.bounded(self._read_body(proto, declared.isdigit()))
            if read is None:
                proto.response_bytes(408, _TIMEOUT_HEADERS, _TIMEOUT_BODY)
                return
            body = read
            if len(body) > self.max_body_bytes or not declared:
                environ["CONTENT_LENGTH"] = str(len(body))
        environ["wsgi.input"] = io.BytesIO(body)
        if self.inline is not None:
            quick = self.inline(environ)  # answered here when nothing in it can wait
            if quick is not None:
                proto.response_bytes(*quick)
                return
        try:
            answer = await self._pool.run(self._run, environ)
        except ConnectionDropped:
            if not _shut_down_connection(scope.client, scope.server):
                raise  # no connection to cut: the server answers its own 500
            return
        proto.response_bytes(int(answer.status[:3]), answer.headers, b"".join(answer.chunks))

    async def _read_body(self, proto: Any, sized: bool) -> bytes:
        """The body, or its first `max_body_bytes` + 1 bytes when it is longer (a declared
        length within the cap is read whole, in one step)."""
        if sized:
            whole: bytes = await proto()
            return whole
        chunks: list[bytes] = []
        size = 0
        async for chunk in proto:
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_body_bytes:
                break
        return b"".join(chunks)[: self.max_body_bytes + 1]

    def _environ(self, scope: Any) -> dict[str, Any]:
        """The PEP 3333 environ of `scope`, as granian's WSGI interface builds it (no body)."""
        server_host, _, server_port = scope.server.rpartition(":")
        environ = dict(self._base_environ)
        environ.update({
            "REQUEST_METHOD": scope.method,
            "PATH_INFO": scope.path.encode("utf-8").decode("latin-1"),
            "QUERY_STRING": scope.query_string,
            "SERVER_NAME": server_host, "SERVER_PORT": server_port,
            "SERVER_PROTOCOL": f"HTTP/{scope.http_version}",
            "REMOTE_ADDR": scope.client.rpartition(":")[0],
            "wsgi.url_scheme": scope.scheme,
        })
        for name, value in scope.headers.items():
            key = name.upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _run(self, environ: dict[str, Any]) -> _Answer:
        """Run the app on a pool thread and collect its whole answer."""
        answer = _Answer()

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            if exc_info is not None and answer.chunks:
                raise exc_info[1].with_traceback(exc_info[2])
            answer.status, answer.headers = status, list(headers)
            return answer.chunks.append

        result = self.app(environ, start_response)
        try:
            answer.chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if callable(close):
                close()
        return answer


def _address(text: str) -> tuple[str, int] | None:
    """`host:port` (RSGI's form, IPv6 hosts in brackets or not) as a pair; None for a socket
    file."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _shut_down_connection(client: str, server: str) -> bool:
    """Shut down this process's TCP connection to `client`; whether one was found.

    The server gives the app no socket, so the connection is found among the process's
    descriptors by its two addresses (a fault-injection path, never the hot path). It is shut
    down, not closed: the server still owns the descriptor and closes it itself.
    """
    peer, local = _address(client), _address(server)
    if peer is None or local is None:
        return False
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError, ValueError):
            fd = int(name)
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            with socket.socket(fileno=os.dup(fd)) as sock:
                if sock.family not in (socket.AF_INET, socket.AF_INET6):
                    continue
                got_peer, got_local = sock.getpeername(), sock.getsockname()
                if (got_peer[0], got_peer[1]) == peer and got_local[1] == local[1]:
                    sock.shutdown(socket.SHUT_RDWR)
                    return True
    return False


def front_for(app: Any, *,
              inline: Callable[[dict[str, Any]], InlineAnswer | None] | None = None) -> RsgiFront:
    """The front for a Flask app, capping bodies at the app's own MAX_CONTENT_LENGTH.

    `inline` answers, on the event loop itself, the requests it can answer without waiting
    on anything (see `sim_trustly.auth_service.fast_path.TokenFastPath.answer_inline`); the
    rest go to the threads.
    """
    limit = app.config.get("MAX_CONTENT_LENGTH") or DEFAULT_MAX_BODY_BYTES
    return RsgiFront(app, max_body_bytes=int(limit), inline=inline)
