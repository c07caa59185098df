"""`scanpay load`: Locust's journeys (loadtests/locustfile.py) headless, bounded in users and time.

A thin layer over the `locust` command, so what it runs is exactly what loadtests/README.md
tells people to run by hand; it only picks bounded defaults, points the journeys at running
sims (`scanpay serve`'s ports unless told) and passes Locust's exit code on (non-zero when any
request failed). Locust is a dev extra: without it the command says how to install it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click

# The user classes of the locustfile, by the names the CLI offers.
JOURNEYS = {"qr-token": "CmsQrTokenUser", "scan-pay": "ScanThenPayUser"}
MAX_USERS = 500
MAX_RUN_TIME_S = 3600
STOP_TIMEOUT_S = 5  # lets a journey in flight finish when the time is up


def default_locustfile() -> Path:
    """loadtests/locustfile.py of this checkout, else of the working directory (the image)."""
    beside = Path(__file__).resolve().parents[1] / "loadtests" / "locustfile.py"
    return beside if beside.exists() else Path.cwd() / "loadtests" / "locustfile.py"


@dataclass(frozen=True)
class LoadOptions:
    """One headless Locust run: where, how many users, how long, which journeys."""

    trustly_url: str = "http://127.0.0.1:8710"
    cms_url: str = "http://127.0.0.1:8720"
    users: int = 4
    spawn_rate: float = 2.0
    run_time_s: int = 30
    journeys: tuple[str, ...] = ()  # keys of JOURNEYS; empty runs them all
    locustfile: Path | None = None
    stats_file: Path | None = None  # Locust's final stats as JSON

    def command(self) -> list[str]:
        """The `python -m locust ...` command line of this run."""
        args = [sys.executable, "-m", "locust", "-f", str(self.locustfile or default_locustfile()),
                "--headless", "--only-summary", "--users", str(self.users),
                "--spawn-rate", f"{self.spawn_rate:g}", "--run-time", f"{self.run_time_s}s",
                "--stop-timeout", str(STOP_TIMEOUT_S), "--host", self.trustly_url.rstrip("/"),
                "--cms-url", self.cms_url.rstrip("/")]
        if self.stats_file is not None:
            args += ["--json-file", str(self.stats_file.with_suffix(""))]
        return args + [JOURNEYS[name] for name in self.journeys]


def run_load(options: LoadOptions) -> int:
    """Run Locust to the end and return its exit code (0: no request failed)."""
    if importlib.util.find_spec("locust") is None:
        raise click.ClickException("Locust is not installed: pip install 'scanpay-sim[dev]' "
                                   "(or pip install locust)")
    locustfile = options.locustfile or default_locustfile()
    if not locustfile.exists():
        raise click.ClickException(f"no locustfile at {locustfile} (run from a checkout, or "
                                   "give --locustfile)")
    # A bounded run: Locust stops itself after run_time_s (+ STOP_TIMEOUT_S); the margin
    # only guards against a hung process.
    limit = options.run_time_s + STOP_TIMEOUT_S + 60
    return subprocess.run(options.command(), check=False, timeout=limit).returncode  # noqa: S603


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
              help="Only these journeys (repeatable). Default: all, weighted 1 qr-token : 3 "
                   "scan-pay.")
@click.option("--locustfile", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Another locustfile (default: loadtests/locustfile.py).")
@click.option("--stats-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write Locust's final statistics as JSON here (a .json file).")
def load(**options: object) -> None:
    """Run Locust's journeys headless against running sims (e.g. `scanpay serve`).

    The CMS asks Trustly for QR tokens (HTTP Basic); a player scans a QR the CMS got and pays
    at the demo bank. Prints Locust's summary; exit code 1 when any request or journey failed.
    See loadtests/README.md for distributed runs (master and workers).
    """
    code = run_load(LoadOptions(**options))  # type: ignore[arg-type]
    sys.exit(code)
