"""The servers under test: one definition of the production serving, switchable by name.

`SERVINGS` names each server stack a benchmark can run an app under; `DEFAULT_SERVING` is
the one the sims are deployed with, so `make bench` measures what production runs. Compare
stacks with `--serving NAME` (every benchmark of the run uses it, for the app and its
reference alike, so ratios stay like for like).

`serve()` starts one server in a subprocess pinned to the server cores, on a free port, with
a scrubbed environment, waits until a readiness request answers as expected, yields a
`Server` (port and the /proc readings of its process tree) and stops it at the end.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.common import REPO_ROOT, Pinning, cpu_seconds, free_port, process_tree, rss_mb
from bench.loadgen import Client, HttpError
from simkit.wait import poll_until

READY_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class App:
    """A WSGI app as `module:factory` names (called with no argument), and its gunicorn hooks.

    Two ways of building it, as the sims' wsgi modules offer them: `factory` once, in a
    master that then forks (gunicorn `--preload`, `hooks` starting per-worker work after the
    fork), and `worker_factory` in every worker of a server that does not preload (granian),
    which must start that per-worker work itself (sim_trustly's recovery sweep). An app with
    no such work builds the same way in both: `worker_factory` defaults to `factory`.
    """

    factory: str
    hooks: str | None = None  # a `-c python:<module>` config for gunicorn
    worker_factory: str | None = None  # `module:factory` for servers that build per worker

    @property
    def gunicorn_spec(self) -> str:
        """`module:factory()`: gunicorn calls the factory."""
        return f"{self.factory}()"

    @property
    def per_worker(self) -> str:
        """`module:factory` that a server calls in each of its workers (granian `--factory`)."""
        return self.worker_factory or self.factory


@dataclass(frozen=True)
class Serving:
    """How to run a WSGI app on a port: a command line builder and what it needs."""

    name: str
    describe: str
    argv: Callable[[App, int], list[str]]
    requires: str = "gunicorn"  # the Python module that must be importable

    def available(self) -> bool:
        """Whether this stack is installed here."""
        return importlib.util.find_spec(self.requires) is not None


def _gunicorn(worker_class: str, workers: int, threads: int) -> Callable[[App, int], list[str]]:
    def argv(app: App, port: int) -> list[str]:
        args = [
            sys.executable, "-m", "gunicorn", app.gunicorn_spec,
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--worker-class", worker_class, "--threads", str(threads),
            "--preload",  # migrations and seeding once, in the master, before the fork
            "--chdir", str(REPO_ROOT), "--log-level", "warning",
            "--backlog", "2048",
        ]
        if app.hooks:
            args += ["-c", f"python:{app.hooks}"]
        return args
    return argv


# The RSGI entry point of each WSGI app a benchmark serves: the same app behind
# `simkit.rsgi_front`, which production puts in front of it (docs/operations.md).
RSGI_TARGETS = {
    "sim_trustly.wsgi:create_in_worker": "sim_trustly.wsgi:create_rsgi_in_worker",
    "sim_cms.wsgi:create": "sim_cms.wsgi:create_rsgi",
    "bench.bare_app:create_app": "bench.rsgi_bare_app:create_rsgi",
}


def _granian(workers: int) -> Callable[[App, int], list[str]]:
    """Production's command: granian's RSGI interface, the app behind `simkit.rsgi_front` (a pool
    of `SCANPAY_THREADS` threads per worker, 8 unless set)."""
    def argv(app: App, port: int) -> list[str]:
        return [
            sys.executable, "-m", "granian", "--interface", "rsgi", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
            "--log-level", "warning", RSGI_TARGETS[app.per_worker],
        ]
    return argv


def _granian_wsgi(workers: int, threads: int) -> Callable[[App, int], list[str]]:
    """granian's WSGI interface (the serving before the RSGI front: a client that sends its
    headers and never its body holds a blocking thread)."""
    def argv(app: App, port: int) -> list[str]:
        return [
            sys.executable, "-m", "granian", "--interface", "wsgi", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
            "--blocking-threads", str(threads), "--log-level", "warning", app.per_worker,
        ]
    return argv


SERVINGS: dict[str, Serving] = {
    s.name: s for s in (
        Serving("gunicorn-sync", "gunicorn, sync workers x2, --preload",
                _gunicorn("sync", 2, 1)),
        Serving("gunicorn-gthread", "gunicorn, gthread 2 workers x 8 threads, --preload",
                _gunicorn("gthread", 2, 8)),
        Serving("gunicorn-sync4", "gunicorn, sync workers x4, --preload",
                _gunicorn("sync", 4, 1)),
        # granian has no --preload and no hooks: each worker builds the app (`App.per_worker`).
        Serving("granian", "granian RSGI front, 2 workers x 8 app threads",
                _granian(2), requires="granian"),
        Serving("granian-wsgi", "granian WSGI, 2 workers x 8 blocking threads",
                _granian_wsgi(2, 8), requires="granian"),
        # How throughput grows with workers (docs/performance.md, "Scale-out").
        Serving("granian-1w", "granian RSGI front, 1 worker x 8 app threads",
                _granian(1), requires="granian"),
        Serving("granian-4w", "granian RSGI front, 4 workers x 8 app threads",
                _granian(4), requires="granian"),
    )
}
# What docker-compose.yml deploys (docs/operations.md); tests/e2e/test_compose.py checks
# that this stack's server, workers, threads and factory are the compose file's.
DEFAULT_SERVING = "granian"


@dataclass(frozen=True)
class Server:
    """A running server: its port and its processes' CPU and memory, from /proc."""

    name: str
    port: int
    pid: int

    def pids(self) -> list[int]:
        """The server's process tree now (master and workers)."""
        return process_tree(self.pid)

    def cpu_seconds(self) -> float | None:
        """CPU time of all its processes so far."""
        return cpu_seconds(self.pids())

    def rss_mb(self) -> list[float]:
        """RSS of each of its processes, in MiB."""
        return [v for v in (rss_mb(pid) for pid in self.pids()) if v is not None]


@dataclass(frozen=True)
class Ready:
    """A readiness request and the status that means "serving"."""

    raw: bytes
    status: int = 200


def _tail(log: Path, chars: int = 4000) -> str:
    text = log.read_text(errors="replace")
    return text if len(text) <= chars else "...\n" + text[-chars:]


async def _probe(port: int, raw: bytes) -> int | None:
    client = Client(port)
    try:
        status, _ = await client.send(raw)
        return status
    except (OSError, HttpError, TimeoutError):
        return None
    finally:
        client.close()


def _wait_ready(name: str, proc: subprocess.Popen[bytes], port: int, ready: Ready,
                log: Path, deadline_s: float) -> None:
    import asyncio

    def ready_now() -> bool | None:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{_tail(log)}")
        status = asyncio.run(_probe(port, ready.raw))
        if status == ready.status:
            return True
        if status is not None:  # it answers, but wrongly: no point waiting longer
            raise RuntimeError(f"{name}: readiness probe answered {status}:\n{_tail(log)}")
        return None

    if poll_until(ready_now, timeout_s=deadline_s, interval_s=0.1) is None:
        raise TimeoutError(f"{name} not ready after {deadline_s} s:\n{_tail(log)}")


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is gone already
        os.killpg(proc.pid, sig)  # the server runs in its own session: its group is its own


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server and every process it started (no worker may outlive a benchmark).

    SIGINT goes to the server's main process only, which stops its workers itself (gunicorn's
    quick shutdown: the load is over). Not to the whole group: a granian worker that gets the
    group's SIGINT and its main process's SIGTERM at once can miss both and never exit, and
    its main process then waits for it forever. The group's SIGKILL afterwards takes whatever
    is left.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    _signal_group(proc, signal.SIGKILL)  # a worker its master left behind


@contextmanager
def run_server(name: str, argv: list[str], env: dict[str, str], ready: Ready,
               pinning: Pinning, port: int) -> Iterator[Server]:
    """Run `argv` (already bound to `port`) on the server cores until the block ends."""
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        log = Path(tmp) / "server.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                pinning.taskset(argv), stdout=sink, stderr=sink, env=env, cwd=REPO_ROOT,
                start_new_session=True)
            try:
                _wait_ready(name, proc, port, ready, log, READY_TIMEOUT_S)
                yield Server(name, port, proc.pid)
            finally:
                _stop(proc)
                _report_tracebacks(name, log)


def _report_tracebacks(name: str, log: Path) -> None:
    """Show a server's errors on stderr before its log goes: a 500 must be explainable."""
    text = log.read_text(errors="replace")
    if "Traceback" in text:
        first = text.index("Traceback")
        print(f"--- {name} logged errors (first of {text.count('Traceback')}):\n"
              f"{text[first:first + 3000]}", file=sys.stderr)


@contextmanager
def serve(name: str, app: App, serving: Serving, env: dict[str, str], ready: Ready,
          pinning: Pinning, port: int | None = None) -> Iterator[Server]:
    """Serve `app` under `serving` on the server cores until the block ends."""
    port = port or free_port()
    with run_server(name, serving.argv(app, port), env, ready, pinning, port) as server:
        yield server
