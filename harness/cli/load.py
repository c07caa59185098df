"""`scanpay load`: Locust's journeys (loadtests/locustfile.py) headless, bounded in users and time.

A thin layer over the `locust` command, so what it runs is exactly what loadtests/README.md
tells people to run by hand: it picks bounded defaults, points the journeys at running sims
(`scanpay serve`'s ports unless told), writes Locust's CSV and HTML results into a results
directory, and passes Locust's exit code on. The locustfile's business gates decide that code
(0: every gate held; 1: a gate failed; 2: the run could not start). With `--workers N` it runs
one master and N worker processes on 127.0.0.1, as a distributed run would on several hosts.

Before starting Locust it checks that both targets answer at all, so an unreachable target is
one clear message instead of a run full of connection errors. Locust is a dev extra: without
it the command says how to install it.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import click

from harness.clients.cms import CmsApi
from harness.clients.http import ConnectError, HTTPError
from harness.clients.trustly import TrustlyApi

# The user classes of the locustfile, by the names the CLI offers.
JOURNEYS: dict[str, tuple[str, ...]] = {
    "floor": ("PlayerUser", "PartnerOpsUser"), "player": ("PlayerUser",),
    "ops": ("PartnerOpsUser",), "qr-token": ("CmsQrTokenUser",), "scan-pay": ("ScanThenPayUser",),
}
DEFAULT_JOURNEYS = ("floor",)
MAX_USERS = 500
MAX_WORKERS = 16
MAX_RUN_TIME_S = 3600
STOP_TIMEOUT_S = 5  # lets a journey in flight finish when the time is up
WORKERS_WAIT_S = 30  # how long the master waits for its workers to connect
REACH_TIMEOUT_S = 5.0


class NothingRun(click.ClickException):
    """Raised when the run cannot start (a target does not answer): exit code 2, as the
    locustfile's own check would give."""

    exit_code = 2


def default_locustfile() -> Path:
    """loadtests/locustfile.py of this checkout, else of the working directory (the image)."""
    beside = Path(__file__).resolve().parents[2] / "loadtests" / "locustfile.py"
    return beside if beside.exists() else Path.cwd() / "loadtests" / "locustfile.py"


@dataclass(frozen=True)
class LoadOptions:
    """One headless Locust run: where, how many users, how long, which journeys, the gates."""

    trustly_url: str = "http://127.0.0.1:8710"
    cms_url: str = "http://127.0.0.1:8720"
    users: int = 4
    spawn_rate: float = 2.0
    run_time_s: int = 30
    journeys: tuple[str, ...] = ()  # keys of JOURNEYS; empty runs the floor
    locustfile: Path | None = None
    stats_file: Path | None = None  # Locust's final stats as JSON
    results_dir: Path | None = None  # Locust's CSV files and HTML report
    admin_token: str | None = None
    max_error_share: float | None = None  # None: the locustfile's default
    max_p95_ms: float | None = None
    step_p95: str | None = None
    amounts: str | None = None
    bank_outcomes: str | None = None
    replay_share: float | None = None
    workers: int = 0  # 0: one process; N: a master and N workers

    def user_classes(self) -> list[str]:
        """The locustfile's user classes this run starts."""
        names = [c for journey in (self.journeys or DEFAULT_JOURNEYS) for c in JOURNEYS[journey]]
        return list(dict.fromkeys(names))

    def command(self, master_port: int | None = None) -> list[str]:
        """The `python -m locust ...` command line of this run (of its master when
        `master_port` is given)."""
        args = [sys.executable, "-m", "locust", "-f", str(self.locustfile or default_locustfile()),
                "--headless", "--only-summary", "--users", str(self.users),
                "--spawn-rate", f"{self.spawn_rate:g}", "--run-time", f"{self.run_time_s}s",
                "--stop-timeout", str(STOP_TIMEOUT_S), "--host", self.trustly_url.rstrip("/"),
                "--cms-url", self.cms_url.rstrip("/")]
        if master_port is not None:
            args += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port",
                     str(master_port), "--expect-workers", str(self.workers),
                     "--expect-workers-max-wait", str(WORKERS_WAIT_S)]
        if self.stats_file is not None:
            args += ["--json-file", str(self.stats_file.with_suffix(""))]
        if self.results_dir is not None:
            args += ["--csv", str(self.results_dir / "load"), "--html",
                     str(self.results_dir / "load.html")]
        return args + self._gate_args() + self.user_classes()

    def _gate_args(self) -> list[str]:
        given = {"--max-error-share": self.max_error_share, "--max-p95-ms": self.max_p95_ms,
                 "--step-p95": self.step_p95, "--amounts": self.amounts,
                 "--bank-outcomes": self.bank_outcomes, "--replay-share": self.replay_share}
        return [part for flag, value in given.items() if value is not None
                for part in (flag, f"{value:g}" if isinstance(value, float) else str(value))]

    def worker_command(self, master_port: int) -> list[str]:
        """One worker's command line; it takes every other option from the master."""
        return [sys.executable, "-m", "locust", "-f", str(self.locustfile or default_locustfile()),
                "--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port),
                *self.user_classes()]

    def environment(self) -> dict[str, str]:
        """The processes' environment: the admin token travels there, not on a command line
        that `ps` shows."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.admin_token:
            env["SCANPAY_LOAD_ADMIN_TOKEN"] = self.admin_token
        return env


def unreachable_targets(options: LoadOptions) -> list[str]:
    """One line per target that gives no HTTP answer at all (any status counts as up)."""
    problems = []
    for what, url, answers_at in (("Trustly", options.trustly_url, TrustlyApi.answers_at),
                                  ("the CMS", options.cms_url, CmsApi.answers_at)):
        try:
            answers_at(url, REACH_TIMEOUT_S)
        except ConnectError:
            problems.append(f"cannot reach {what} at {url}: connection refused")
        except HTTPError as exc:
            problems.append(f"cannot reach {what} at {url}: {type(exc).__name__} {exc}")
    return problems


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_load(options: LoadOptions) -> int:
    """Run Locust to the end and return its exit code (the gates' verdict)."""
    if importlib.util.find_spec("locust") is None:
        raise click.ClickException("Locust is not installed: pip install 'scanpay-sim[dev]' "
                                   "(or pip install locust)")
    locustfile = options.locustfile or default_locustfile()
    if not locustfile.exists():
        raise click.ClickException(f"no locustfile at {locustfile} (run from a checkout, or "
                                   "give --locustfile)")
    problems = unreachable_targets(options)
    if problems:
        raise NothingRun("; ".join(problems) + ". Nothing was run.")
    if options.results_dir is not None:
        options.results_dir.mkdir(parents=True, exist_ok=True)
    # A bounded run: Locust stops itself after run_time_s (+ STOP_TIMEOUT_S and the gates'
    # settling); the margin only guards against a hung process.
    limit = options.run_time_s + STOP_TIMEOUT_S + WORKERS_WAIT_S + 120
    if options.workers == 0:
        return subprocess.run(options.command(), check=False, timeout=limit,  # noqa: S603
                              env=options.environment()).returncode
    return _run_distributed(options, limit)


def _run_distributed(options: LoadOptions, limit: float) -> int:
    """A master in the foreground and `workers` worker processes whose output goes to
    `worker-N.log` in the results directory (or is discarded without one)."""
    port = _free_port()
    env = options.environment()
    master = subprocess.Popen(options.command(master_port=port), env=env)  # noqa: S603
    with ExitStack() as stack:
        workers = []
        for n in range(options.workers):
            log = (stack.enter_context((options.results_dir / f"worker-{n}.log").open("w"))
                   if options.results_dir is not None else subprocess.DEVNULL)
            workers.append(subprocess.Popen(options.worker_command(port), env=env,  # noqa: S603
                                            stdout=log, stderr=subprocess.STDOUT))
        try:
            code = master.wait(timeout=limit)
        finally:
            for process in [master, *workers]:
                _reap(process)
    return code


def _reap(process: subprocess.Popen[bytes]) -> None:
    """Wait briefly for a process that should be ending (workers quit with their master)."""
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@click.command()
@click.option("--trustly-url", default="http://127.0.0.1:8710", show_default=True,
              help="Base URL of sim_trustly (the QR Code API and the phone's API).")
@click.option("--cms-url", default="http://127.0.0.1:8720", show_default=True,
              help="Base URL of the CMS the EGMs talk to.")
@click.option("--users", type=click.IntRange(1, MAX_USERS), default=4, show_default=True,
              help="Concurrent simulated users.")
@click.option("--spawn-rate", type=click.FloatRange(0.1, 100.0), default=2.0,
              show_default=True, help="Users started per second.")
@click.option("--run-time", "run_time_s", type=click.IntRange(1, MAX_RUN_TIME_S), default=30,
              show_default=True, help="Seconds to run before stopping.")
@click.option("--journey", "journeys", type=click.Choice(sorted(JOURNEYS)), multiple=True,
              help="Only these journeys (repeatable). Default: floor (players and ops).")
@click.option("--admin-token", envvar="SCANPAY_ADMIN_TOKEN", default=None,
              help="The sims' control-API token ($SCANPAY_ADMIN_TOKEN): the floor creates its "
                   "own EGMs and the gates reconcile. Without it, no reconciliation.")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("load-results"), show_default=True,
              help="Where Locust writes load_*.csv and load.html (and worker logs).")
@click.option("--max-error-share", type=click.FloatRange(0.0, 1.0), default=None,
              help="Gate: highest share of failed requests [default 0.01].")
@click.option("--max-p95-ms", type=click.FloatRange(0.0), default=None,
              help="Gate: highest p95 of any step in ms [default 5000].")
@click.option("--step-p95", default=None, metavar="PART=MS,...",
              help="Gate: p95 limits of steps whose name contains PART.")
@click.option("--amounts", default=None, metavar="AMOUNT:SHARE,...",
              help="Payment amounts (minor units) and their shares [100:60,500:30,2000:10].")
@click.option("--bank-outcomes", default=None, metavar="OUTCOME:SHARE,...",
              help="Demo-bank outcomes and shares: ok, NotEnoughFunds, LoginError, "
                   "AccountLocked, Unavailable.")
@click.option("--replay-share", type=click.FloatRange(0.0, 1.0), default=None,
              help="Share of spent QRs paid again (must be refused) [default 0.05].")
@click.option("--workers", type=click.IntRange(0, MAX_WORKERS), default=0, show_default=True,
              help="Run distributed: one master and this many workers on 127.0.0.1.")
@click.option("--locustfile", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Another locustfile (default: loadtests/locustfile.py).")
@click.option("--stats-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write Locust's final statistics as JSON here (a .json file); the "
                   "summary is printed all the same.")
def load(**options: object) -> None:
    """Run Locust's journeys headless against running sims (e.g. `scanpay serve`).

    The casino floor by default: EGM screens showing QRs, players paying with a mix of
    amounts and bank outcomes, replays of spent QRs, partner ops reading limits. At the end
    the gates reconcile Trustly, the CMS and the EGM meters and check error share and p95.
    Exit code 0 when every gate held, 1 when one failed, 2 when nothing could run.
    See loadtests/README.md for the options and for distributed runs.
    """
    code = run_load(LoadOptions(**options))  # type: ignore[arg-type]
    sys.exit(code)
