"""A lean load generator: a minimal HTTP/1.1 client on asyncio, closed loop, one core.

Why not a full-featured client: on a 2-core machine the generator gets one core and must
leave the measured server far behind. A full client spends a millisecond or more per
request in Python; this one sends pre-built bytes and parses only the status line and
`Content-Length`, about a tenth of that. It keeps a connection alive when the server allows
and reconnects when the server closes (gunicorn's sync worker closes after every answer),
for every target alike, so the comparison stays fair.

Closed loop: each of `connections` workers sends its next request as soon as the previous
one answered. Latency is `time.perf_counter()` around each request.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.common import percentile

RESPONSE_TIMEOUT_S = 30.0


class HttpError(Exception):
    """The connection failed or the server answered something this client cannot read."""


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._complete(eof=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._complete(eof=True)

    def _complete(self, eof: bool) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            answer = _parse(self.buffer, eof)
        except HttpError as exc:
            waiter.set_exception(exc)
            return
        if answer is not None:
            status, body, keep, used = answer
            del self.buffer[:used]
            waiter.set_result((status, body, keep))


def _parse(buffer: bytearray, eof: bool) -> tuple[int, bytes, bool, int] | None:
    """(status, body, keep-alive, bytes used) of a complete response, None if incomplete."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        if eof:
            raise HttpError("connection closed before a response")
        return None
    lines = bytes(buffer[:head_end]).decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError) as exc:
        raise HttpError(f"bad status line {lines[0]!r}") from exc
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    start = head_end + 4
    if "content-length" in headers:
        end = start + int(headers["content-length"])
        if len(buffer) < end:
            if eof:
                raise HttpError("connection closed in the middle of a body")
            return None
    elif "chunked" in headers.get("transfer-encoding", ""):
        chunked = _dechunk(buffer, start)
        if chunked is None:
            if eof:
                raise HttpError("connection closed in the middle of a chunked body")
            return None
        body, end = chunked
        return status, body, headers.get("connection") != "close" and not eof, end
    else:  # the body runs to the end of the connection
        if not eof:
            return None
        end = len(buffer)
    keep = headers.get("connection") != "close" and not eof
    return status, bytes(buffer[start:end]), keep, end


def _dechunk(buffer: bytearray, at: int) -> tuple[bytes, int] | None:
    """A chunked body starting at `at`: (body, end), None while incomplete."""
    body = bytearray()
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        try:
            size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
        except ValueError as exc:
            raise HttpError("bad chunk size") from exc
        at = line_end + 2
        if size == 0:  # no trailers expected: the final CRLF ends the body
            return (bytes(body), at + 2) if len(buffer) >= at + 2 else None
        if len(buffer) < at + size + 2:
            return None
        body += buffer[at:at + size]
        at += size + 2


class Client:
    """One HTTP/1.1 connection to 127.0.0.1:`port`, reopened whenever the server closed it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._proto: _Protocol | None = None

    async def _connection(self) -> _Protocol:
        if self._proto is None or self._proto.closed:
            loop = asyncio.get_running_loop()
            _, proto = await loop.create_connection(_Protocol, "127.0.0.1", self.port)
            self._proto = proto
        return self._proto

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        """Send one pre-built request; answer (status, body)."""
        proto = await self._connection()
        waiter: asyncio.Future[tuple[int, bytes, bool]] = (
            asyncio.get_running_loop().create_future())
        proto.waiter = waiter
        assert proto.transport is not None
        proto.transport.write(raw)
        try:
            async with asyncio.timeout(RESPONSE_TIMEOUT_S):
                status, body, keep = await waiter
        except BaseException:
            self.close()
            raise
        if not keep:
            self.close()
        return status, body

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """Build and send one request."""
        return await self.send(build_request(method, path, body, headers))

    def close(self) -> None:
        """Drop the connection (the next request opens a new one)."""
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None


def build_request(method: str, path: str, body: bytes = b"",
                  headers: dict[str, str] | None = None) -> bytes:
    """The bytes of one HTTP/1.1 request to 127.0.0.1."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class PhaseStats:
    """What one closed-loop phase measured: counts, statuses, latencies, wall and CPU time."""

    name: str
    expected: int = 200
    elapsed_s: float = 0.0
    client_cpu_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list, repr=False)
    statuses: Counter[int] = field(default_factory=Counter)
    server_cpu_s: float | None = None
    server_rss_mb: list[float] = field(default_factory=list)

    @property
    def requests(self) -> int:
        """Requests answered (any status) or failed."""
        return sum(self.statuses.values())

    @property
    def errors(self) -> int:
        """Requests not answered with the expected status (status 0: no answer at all)."""
        return self.requests - self.statuses[self.expected]

    @property
    def rps(self) -> float:
        """Requests per second of wall time."""
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    def p_ms(self, pct: float) -> float:
        """Latency percentile in milliseconds."""
        return percentile(self.latencies_s, pct) * 1000

    def server_cpu_ms(self) -> float | None:
        """Server CPU milliseconds per request."""
        if self.server_cpu_s is None or not self.requests:
            return None
        return self.server_cpu_s * 1000 / self.requests

    def as_dict(self) -> dict[str, object]:
        """The figures, for the results file."""
        cpu = self.server_cpu_ms()
        return {
            "target": self.name, "requests": self.requests, "errors": self.errors,
            "elapsed_s": round(self.elapsed_s, 3), "rps": round(self.rps, 1),
            "p50_ms": round(self.p_ms(50), 3), "p99_ms": round(self.p_ms(99), 3),
            "server_cpu_ms_per_req": None if cpu is None else round(cpu, 3),
            "client_cpu_ms_per_req": round(self.client_cpu_s * 1000 / max(1, self.requests), 3),
            "server_rss_mb": [round(v, 1) for v in self.server_rss_mb],
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }


Requests = bytes | Callable[[int, int], bytes]  # fixed, or made from (worker, sequence number)


async def _worker(port: int, requests: Requests, worker: int, until: float,
                  stats: PhaseStats) -> None:
    client = Client(port)
    clock = time.perf_counter
    sequence = 0
    try:
        while clock() < until:
            raw = requests if isinstance(requests, bytes) else requests(worker, sequence)
            sequence += 1
            began = clock()
            try:
                status, _ = await client.send(raw)
            except (OSError, HttpError, TimeoutError):
                status = 0
            stats.statuses[status] += 1
            if status:
                stats.latencies_s.append(clock() - began)
    finally:
        client.close()


async def closed_loop(name: str, port: int, requests: Requests, connections: int,
                      duration_s: float, expected: int = 200) -> PhaseStats:
    """Send `requests` from `connections` workers for `duration_s`; every answer is recorded
    (a status other than `expected` counts as an error)."""
    stats = PhaseStats(name, expected)
    cpu0, began = time.process_time(), time.perf_counter()
    until = began + duration_s
    await asyncio.gather(*(_worker(port, requests, n, until, stats)
                           for n in range(connections)))
    stats.elapsed_s = time.perf_counter() - began
    stats.client_cpu_s = time.process_time() - cpu0
    return stats
