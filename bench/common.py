"""Benchmark machinery: a gunicorn server in a subprocess and a lean in-process load generator.

The load generator uses `http.client` from a pool of threads, one connection each, kept alive
when the server allows it (gunicorn's sync worker closes after every response; then the client
reconnects, for both targets alike). On a small machine the client shares the cores with the
server, so it has to be cheap per request: `http.client` costs a fraction of what a
full-featured client does, which leaves the CPU to the server under test. Both targets get the
same server settings and the same generator, so the ratio of their figures is what the
application adds.
"""

from __future__ import annotations

import http.client
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Ports the machine's other services use; a benchmark server must never take them.
RESERVED_PORTS = frozenset({1883, 3306, 4222, 5432, 5672, 6379, 8710, 8720})
CONNECTION_ERRORS = (OSError, http.client.HTTPException)


@dataclass(frozen=True)
class HttpRequest:
    """One request, sent unchanged many times."""

    path: str
    body: bytes
    headers: dict[str, str]
    method: str = "POST"


@dataclass(frozen=True)
class ServerConfig:
    """gunicorn settings, identical for every target of a run."""

    workers: int
    worker_class: str = "sync"
    threads: int = 1
    ready_timeout_s: float = 60.0


@dataclass
class LoadResult:
    """What one load phase measured against one target."""

    name: str
    requests: int
    errors: int
    elapsed_s: float
    client_cpu_s: float
    latencies_s: list[float] = field(repr=False)
    statuses: Counter[int] = field(default_factory=Counter)
    server_cpu_s: float | None = None

    @property
    def rps(self) -> float:
        """Completed requests per second of wall time."""
        return self.requests / self.elapsed_s

    def percentile_ms(self, pct: float) -> float:
        """Nearest-rank percentile of the per-request latencies, in milliseconds."""
        ordered = sorted(self.latencies_s)
        rank = max(1, math.ceil(pct / 100 * len(ordered)))
        return ordered[rank - 1] * 1000

    def as_dict(self) -> dict[str, object]:
        """The figures, for `--json`."""
        return {
            "target": self.name, "requests": self.requests, "errors": self.errors,
            "elapsed_s": round(self.elapsed_s, 3), "rps": round(self.rps, 1),
            "p50_ms": round(self.percentile_ms(50), 3),
            "p99_ms": round(self.percentile_ms(99), 3),
            "client_cpu_ms_per_req": round(self.client_cpu_s * 1000 / self.requests, 3),
            "server_cpu_ms_per_req": (
                None if self.server_cpu_s is None
                else round(self.server_cpu_s * 1000 / self.requests, 3)
            ),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }


def free_port() -> int:
    """A free TCP port on 127.0.0.1, never one of the machine's reserved service ports."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port


def _send(conn: http.client.HTTPConnection, req: HttpRequest) -> int:
    conn.request(req.method, req.path, body=req.body, headers=req.headers)
    response = conn.getresponse()
    response.read()
    return response.status


def probe(port: int, req: HttpRequest, timeout_s: float = 5.0) -> int | None:
    """The status of one request, or None when nothing answers yet."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        return _send(conn, req)
    except CONNECTION_ERRORS:
        return None
    finally:
        conn.close()


class _Recorder:
    """Hands out request slots and collects results; shared by the generator's threads."""

    def __init__(self, total: int) -> None:
        self._left = total
        self._lock = threading.Lock()
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()

    def take(self) -> bool:
        with self._lock:
            self._left -= 1
            return self._left >= 0

    def record(self, status: int, latency_s: float) -> None:
        with self._lock:
            self.statuses[status] += 1
            if status:
                self.latencies.append(latency_s)


def _client_loop(port: int, req: HttpRequest, rec: _Recorder, start: threading.Barrier) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    start.wait()
    try:
        while rec.take():
            began = time.perf_counter()
            try:
                status = _send(conn, req)
            except CONNECTION_ERRORS:
                conn.close()  # the next request reconnects
                status = 0
            rec.record(status, time.perf_counter() - began)
    finally:
        conn.close()


def run_load(name: str, port: int, req: HttpRequest, total: int, concurrency: int) -> LoadResult:
    """Send `total` requests with `concurrency` threads; time each one and the whole phase."""
    rec = _Recorder(total)
    start = threading.Barrier(concurrency + 1)
    threads = [
        threading.Thread(target=_client_loop, args=(port, req, rec, start), daemon=True)
        for _ in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    cpu0 = time.process_time()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    errors = total - rec.statuses[200]
    return LoadResult(
        name=name, requests=total, errors=errors, elapsed_s=elapsed,
        client_cpu_s=time.process_time() - cpu0, latencies_s=rec.latencies,
        statuses=rec.statuses,
    )


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(master_pid: int) -> float | None:
    """CPU time used so far by a gunicorn master and its workers; None off Linux."""
    total = 0.0
    try:
        total += _cpu_seconds(master_pid)
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
                if int(fields[1]) == master_pid:
                    total += _cpu_seconds(int(stat.parent.name))
            except (OSError, IndexError, ValueError):
                continue  # the process ended while we looked
    except OSError:
        return None
    return total


def _gunicorn_argv(app_spec: str, port: int, config: ServerConfig) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", app_spec,
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(config.workers),
        "--worker-class", config.worker_class,
        "--threads", str(config.threads),
        "--preload",  # build the app (migrations, seeding) once, before the workers fork
        "--chdir", str(REPO_ROOT),
        "--log-level", "warning",
    ]


def _log_tail(log: Path, chars: int = 4000) -> str:
    text = log.read_text(errors="replace")
    return text if len(text) <= chars else "...\n" + text[-chars:]


def _wait_ready(proc: subprocess.Popen[bytes], port: int, req: HttpRequest, log: Path,
                deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}:\n{_log_tail(log)}")
        status = probe(port, req, timeout_s=5.0)
        if status == 200:
            return
        if status is not None:  # the app answers, but wrongly: no point waiting longer
            raise RuntimeError(f"readiness probe answered {status}:\n{_log_tail(log)}")
        time.sleep(0.05)  # between polls; the deadline bounds the wait
    raise TimeoutError(f"gunicorn not ready after {deadline_s} s:\n{_log_tail(log)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # gunicorn's quick shutdown: the load is over
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Server:
    """A running gunicorn: where it listens and how much CPU it has used."""

    port: int
    pid: int

    def cpu_seconds(self) -> float | None:
        """CPU time of the master and its workers so far (None when it cannot be read)."""
        return server_cpu_seconds(self.pid)


@contextmanager
def gunicorn(
    app_spec: str, config: ServerConfig, ready: HttpRequest, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Serve `app_spec` with gunicorn on a free port until the block ends.

    The server's environment is this one without `SCANPAY_*` variables (a run must not pick up
    whatever config the shell has), plus `env`.

    Ready means `ready` answered 200, so the app was built and a worker is serving.
    """
    port = free_port()
    paths = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SCANPAY_")}
    server_env = {**inherited, **(env or {}), "PYTHONPATH": os.pathsep.join(paths)}
    with tempfile.TemporaryDirectory(prefix="bench-gunicorn-") as tmp:
        log = Path(tmp) / "gunicorn.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                _gunicorn_argv(app_spec, port, config), stdout=sink, stderr=sink, env=server_env,
                cwd=REPO_ROOT,
            )
            try:
                _wait_ready(proc, port, ready, log, config.ready_timeout_s)
                yield Server(port, proc.pid)
            finally:
                _stop(proc)
