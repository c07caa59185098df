"""Start the project's commands as real processes on 127.0.0.1 and wait for them, bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.common import free_port
from simkit.tls import tls_context
from simkit.wait import poll_until

# free_port is bench.common's, re-exported so every test picks ports one way.
__all__ = ["SCANPAY", "Process", "free_port", "gunicorn", "running", "scanpay_serve",
           "wait_until_up"]

SCANPAY = str(Path(sys.executable).with_name("scanpay"))




def wait_until_up(url: str, process: Process, deadline_s: float = 60.0) -> None:
    """Poll `url` until it answers, the process dies, or the deadline passes."""
    def answers() -> bool | None:
        if process.poll() is not None:
            raise AssertionError(f"process exited early: {process.communicate()[1]}")
        try:
            httpx.get(url, timeout=0.5, verify=tls_context())
        except httpx.TransportError:
            return None
        return True

    if poll_until(answers, timeout_s=deadline_s, interval_s=0.05) is None:
        raise AssertionError(f"{url} did not come up within {deadline_s}s")


class Process:
    """A running command whose output goes to files (a pipe nobody reads would block it)."""

    def __init__(self, popen: subprocess.Popen[str], out: Path, err: Path) -> None:
        self.popen = popen
        self._out, self._err = out, err
        self._final: tuple[str, str] | None = None

    def poll(self) -> int | None:
        """The exit code, or None while it runs."""
        return self.popen.poll()

    @property
    def returncode(self) -> int | None:
        """The exit code once it ended."""
        return self.popen.returncode

    def send_signal(self, sig: int) -> None:
        """Send `sig` to the process."""
        self.popen.send_signal(sig)

    def stderr_so_far(self) -> str:
        """What the process has written to its standard error up to now."""
        return self._err.read_text(errors="replace")

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait (at most `timeout` seconds) for the end and return (stdout, stderr)."""
        self.popen.wait(timeout)
        if self._final is None:
            self._final = (self._out.read_text(errors="replace"),
                           self._err.read_text(errors="replace"))
        return self._final


@contextmanager
def running(args: Sequence[str], ready_url: str, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> Iterator[Process]:
    """Run `args` until the block ends, then interrupt it (Ctrl-C) and reap it."""
    with tempfile.TemporaryDirectory(prefix="scanpay-proc-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with out.open("w") as out_file, err.open("w") as err_file:
            popen = subprocess.Popen(
                list(args), stdout=out_file, stderr=err_file, text=True,
                env={**os.environ, **(env or {})}, cwd=cwd,
            )
        process = Process(popen, out, err)
        try:
            wait_until_up(ready_url, process)
            yield process
        finally:
            if popen.poll() is None:
                popen.send_signal(signal.SIGINT)
                try:
                    popen.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.wait()
            process.communicate()


@contextmanager
def gunicorn(app_spec: str, env: dict[str, str], *, ready_path: str = "/openapi.json",
             workers: int = 2, threads: int = 8) -> Iterator[str]:
    """Serve `app_spec` under gunicorn (preloaded, `workers` processes) and yield its base URL."""
    port = free_port()
    repo = str(Path(__file__).resolve().parents[2])
    args = [
        sys.executable, "-m", "gunicorn", app_spec, "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads),
        "--preload", "--chdir", repo, "--log-level", "warning", "--graceful-timeout", "5",
    ]
    env = {**env, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    base = f"http://127.0.0.1:{port}"
    with running(args, base + ready_path, env=env):
        yield base


@contextmanager
def scanpay_serve(data_dir: Path, admin_token: str | None = None) -> Iterator[tuple[str, str]]:
    """`scanpay serve` on two free ports until the block ends; yields the Trustly and CMS URLs."""
    trustly_port, cms_port = free_port(), free_port()
    args = [SCANPAY, "serve", "--trustly-port", str(trustly_port), "--cms-port", str(cms_port),
            "--data-dir", str(data_dir)]
    if admin_token is not None:
        args += ["--admin-token", admin_token]
    trustly, cms = f"http://127.0.0.1:{trustly_port}", f"http://127.0.0.1:{cms_port}"
    with running(args, f"{cms}/openapi.json"):
        yield trustly, cms
