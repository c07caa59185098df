"""The socket transport under the sims' HTTP clients: httpx's API on the stdlib's HTTP/1.1.

The sims call each other on every flow: TPAS calls the CMS twice per payment (limits,
funding), the CMS calls Trustly for every QR. httpx's own transport (httpcore and h11) spends
about 350 us of CPU per call on 127.0.0.1; `http.client` parses the same exchange for about
120 us. This transport keeps httpx as the interface callers program against (requests,
responses, timeouts, `httpx.RequestError` for every network failure) and sends through
`http.client` connections kept alive in a small pool per origin.

What callers rely on (TPAS most of all), kept here:

- Failures are httpx exceptions: a connect failure is `ConnectError`/`ConnectTimeout`, a
  slow answer `ReadTimeout`, a connection closed without an answer `RemoteProtocolError`,
  anything else on the socket `ReadError`/`WriteError`. TPAS treats each as an unknown
  outcome (inquire, never void), so the mapping only has to be a `RequestError`.
- A request is never sent twice by the transport: after a failure the caller decides
  (TPAS inquires first). An idle connection the server has closed is noticed before use
  (its socket reads as ready) and replaced, so keep-alive does not turn into spurious errors.
- Each call's timeouts are the ones its httpx request carries (connect, then read).
"""

from __future__ import annotations

import http.client
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from simkit.correlation import propagate_correlation_id

MAX_IDLE_PER_ORIGIN = 16
_Origin = tuple[str, str, int]


def exchange_through(transport: httpx.BaseTransport, request: httpx.Request) -> httpx.Response:
    """Send `request` straight through `transport` and read the whole answer.

    What `httpx.Client` adds around a transport (URL and header merging, cookies, the auth
    and redirect machinery, event hooks) cost as much CPU as the transport itself; a sim
    calling another needs none of it. The served request's correlation id goes along, as
    the sims' client hook would add it; failures are the transport's httpx exceptions.
    """
    propagate_correlation_id(request)
    response = transport.handle_request(request)
    response.request = request
    try:
        response.read()
    finally:
        response.close()
    return response


class StdlibTransport(httpx.BaseTransport):
    """An httpx transport over pooled keep-alive `http.client` connections (thread-safe)."""

    def __init__(self, max_idle_per_origin: int = MAX_IDLE_PER_ORIGIN) -> None:
        self._idle: dict[_Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._max_idle = max_idle_per_origin

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` on an idle or new connection and read the whole answer."""
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        connection = self._checkout(origin)
        try:
            if connection.sock is None:
                with _connect_errors(request):
                    connection.timeout = timeouts.get("connect")
                    connection.connect()
            with _exchange_errors(request):
                connection.sock.settimeout(timeouts.get("read"))
                response = _exchange(connection, request)
                body = response.read()
        except BaseException:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        else:
            self._checkin(origin, connection)
        return httpx.Response(
            status_code=response.status, headers=response.getheaders(),
            stream=httpx.ByteStream(body), extensions={"http_version": b"HTTP/1.1"},
        )

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            pools, self._idle = list(self._idle.values()), {}
        for pool in pools:
            for connection in pool:
                connection.close()

    def _checkout(self, origin: _Origin) -> http.client.HTTPConnection:
        """An idle connection that is still open, or a new (unconnected) one."""
        while True:
            with self._lock:
                pool = self._idle.get(origin)
                connection = pool.pop() if pool else None
            if connection is None:
                scheme, host, port = origin
                if scheme == "https":
                    return http.client.HTTPSConnection(host, port)
                return http.client.HTTPConnection(host, port)
            if _still_open(connection):
                return connection
            connection.close()

    def _checkin(self, origin: _Origin, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            pool = self._idle.setdefault(origin, [])
            if len(pool) < self._max_idle:
                pool.append(connection)
                return
        connection.close()


def _still_open(connection: http.client.HTTPConnection) -> bool:
    """An idle keep-alive socket that reads as ready has been closed (or spoken on) by the
    server: it must not carry a request."""
    sock = connection.sock
    if sock is None:
        return False
    # poll(), not select(): select() refuses descriptors above 1023, which a busy server
    # process reaches, and every connection would then look closed and never be reused.
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


def _exchange(connection: http.client.HTTPConnection, request: httpx.Request) -> Any:
    """Write the request exactly as httpx built it (its headers, its body) and read the head."""
    connection.putrequest(request.method, request.url.raw_path.decode("ascii"),
                          skip_host=True, skip_accept_encoding=True)
    for name, value in request.headers.raw:
        connection.putheader(name, value)
    connection.endheaders(request.read() or None)
    return connection.getresponse()


@contextmanager
def _connect_errors(request: httpx.Request) -> Iterator[None]:
    """Connecting failed: nothing was sent."""
    try:
        yield
    except TimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
    except OSError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc


@contextmanager
def _exchange_errors(request: httpx.Request) -> Iterator[None]:
    """Failures once connected: the request may have reached the CMS."""
    try:
        yield
    except TimeoutError as exc:
        raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
    except (http.client.HTTPException, ConnectionError) as exc:
        raise httpx.RemoteProtocolError(f"connection closed: {exc!r}", request=request) from exc
    except OSError as exc:
        raise httpx.ReadError(str(exc), request=request) from exc
