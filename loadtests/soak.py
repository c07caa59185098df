"""`python -m loadtests.soak` (`make load-soak`): the floor for minutes, watching the sims' memory.

    python -m loadtests.soak                                # 50 users, 10 minutes, PostgreSQL
    python -m loadtests.soak --users 5 --minutes 1 --db sqlite --results-dir /tmp/soak

A soak asks what a short load test cannot: does a run stay clean for long, and does the memory
of the sims level off? It starts both sims under the production serving (bench/servers.py's
granian, each wired to the other, with an admin token so the control API, the journal and the
gates' reconciliation are on), on scratch PostgreSQL databases made and dropped as the
benchmarks make theirs (or SQLite files in a temporary directory), runs `scanpay load` (the
casino floor, its business gates) against them, and reads the resident memory of every sim
process, master and workers, from /proc every 10 s into `rss.csv`.

PASS needs all of: Locust's gates green (exit code 0), zero failed requests, the
reconciliation EXACT, and each sim's RSS (its processes summed) grown by less than 10% from
half time to the end of the run time: growth in the first half is warm-up (caches, pools,
imports), growth in the second is what a leak looks like. The summary is printed and written
to `soak.json`; the exit code is 1 on FAIL. Every server is stopped on the way out, also on
Ctrl-C, SIGTERM or an error.

Nothing is pinned: the soak judges failures and memory, not the cost of a request, so the
sims and Locust share the machine as a deployment's would.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from bench.common import REPO_ROOT, Pinning, free_port, rss_mb, scrubbed_env
from bench.pg import PostgresUnavailable, scratch_database
from bench.report import machine
from bench.run import PG_ADMIN_URL
from bench.servers import DEFAULT_SERVING, SERVINGS, Ready, Server, _stop, serve
from bench.sims import CMS_APP, CMS_TOKEN_REQUEST, TRUSTLY_APP, TRUSTLY_READY
from simkit.clock import monotonic

ADMIN_TOKEN = secrets.token_urlsafe(16)  # this run's sims only
SAMPLE_EVERY_S = 10.0
MAX_GROWTH_PCT = 10.0
SPAWN_RATE = 10.0  # users per second: 50 users are all seated within the first 5 s
DEFAULT_RESULTS_DIR = Path("load-results") / "soak"
SIMS = ("sim_trustly", "sim_cms")
_ERROR_SHARE = re.compile(r"error share \S+ \((?P<failures>\d+) of (?P<requests>\d+)\)")


# --- the judgement (pure functions) ---------------------------------------------------------

@dataclass(frozen=True)
class RssSample:
    """One process's resident memory at one sampling round."""

    elapsed_s: float  # since the load started
    sim: str
    pid: int
    role: str  # "master" or "worker"
    rss_mib: float


@dataclass(frozen=True)
class Growth:
    """A sim's RSS (all its processes) at half time and at the end of the run time."""

    sim: str
    half_s: float
    half_mib: float
    end_s: float
    end_mib: float

    @property
    def pct(self) -> float:
        """Growth over the second half in % of the half-time figure."""
        return (self.end_mib - self.half_mib) / self.half_mib * 100 if self.half_mib else 0.0


def sim_totals(samples: Sequence[RssSample]) -> dict[str, list[tuple[float, float]]]:
    """Per sim, (elapsed s, MiB of all its processes) for each sampling round, in time order."""
    rounds: dict[str, dict[float, float]] = {}
    for s in samples:
        per_round = rounds.setdefault(s.sim, {})
        per_round[s.elapsed_s] = per_round.get(s.elapsed_s, 0.0) + s.rss_mib
    return {sim: sorted(per_round.items()) for sim, per_round in rounds.items()}


def rss_growth(samples: Sequence[RssSample], run_s: float) -> dict[str, Growth]:
    """Each sim's growth between the rounds nearest half time and nearest the end of the run
    time (the sampler takes a round at both); sims with no sample are left out."""
    growth = {}
    for sim, totals in sim_totals(samples).items():
        half = min(totals, key=lambda t: abs(t[0] - run_s / 2))
        end = min(totals, key=lambda t: abs(t[0] - run_s))
        growth[sim] = Growth(sim, half[0], half[1], end[0], end[1])
    return growth


@dataclass(frozen=True)
class LoadOutcome:
    """What `scanpay load` said: its exit code, Locust's totals and the reconciliation."""

    exit_code: int
    requests: int | None  # None: no statistics file (Locust did not get that far)
    failures: int | None
    reconciliation: tuple[str, ...]  # the summary's lines, as printed
    result_line: str | None  # "result: PASS" / "result: FAIL (...)"

    @property
    def reconciliation_verdict(self) -> str | None:
        """EXACT or MISMATCH from the reconciliation's verdict line (None: not reconciled)."""
        for line in self.reconciliation:
            if line.startswith("verdict"):
                return line.split()[-1]
        return None


def problems(outcome: LoadOutcome, growth: dict[str, Growth],
             max_growth_pct: float = MAX_GROWTH_PCT) -> list[str]:
    """Why the soak fails: one line per reason, none when it passes."""
    found = []
    if outcome.exit_code != 0:
        found.append(f"Locust's gates failed (exit code {outcome.exit_code})")
    if outcome.failures is None:
        found.append("no request count: Locust printed no summary")
    elif outcome.failures:
        found.append(f"{outcome.failures} failed request(s) of {outcome.requests}")
    if outcome.reconciliation_verdict != "EXACT":
        found.append(f"reconciliation {outcome.reconciliation_verdict or 'missing'}")
    for sim in SIMS:
        g = growth.get(sim)
        if g is None:
            found.append(f"no RSS samples of {sim}")
        elif g.pct >= max_growth_pct:
            found.append(f"{sim} RSS grew {g.pct:.1f}% over the last half (limit "
                         f"{max_growth_pct:g}%)")
    return found


def read_load_outcome(exit_code: int, output: str, results_dir: Path) -> LoadOutcome:
    """The outcome from `scanpay load`'s printed summary.

    Failures and requests come from the error-share gate's line, which counts every
    request including the journeys that finished during the stop; Locust's load_stats.csv
    is written before those, so it is only the fallback when the summary is missing.
    """
    lines = output.splitlines()
    reconciliation: list[str] = []
    if "reconciliation" in lines:
        for line in lines[lines.index("reconciliation") + 1:]:
            if not line.startswith("  "):
                break
            reconciliation.append(line.strip())
    result = next((line for line in reversed(lines) if line.startswith("result: ")), None)
    requests = failures = None
    share = next((m for m in map(_ERROR_SHARE.search, lines) if m), None)
    stats = results_dir / "load_stats.csv"
    if share is not None:
        failures, requests = int(share["failures"]), int(share["requests"])
    elif stats.exists():
        with stats.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("Name") == "Aggregated":
                    requests, failures = int(row["Request Count"]), int(row["Failure Count"])
    return LoadOutcome(exit_code, requests, failures, tuple(reconciliation), result)


# --- the run ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SoakOptions:
    """One soak: how many users for how long, on which database, results where."""

    users: int = 50
    minutes: float = 10.0
    db: str = "postgresql"
    results_dir: Path = DEFAULT_RESULTS_DIR
    pg_admin_url: str = PG_ADMIN_URL

    @property
    def run_s(self) -> int:
        """Locust's run time in whole seconds."""
        return max(1, round(self.minutes * 60))


@contextmanager
def _databases(options: SoakOptions) -> Iterator[tuple[str, str]]:
    """(Trustly's URL, the CMS's URL): new scratch databases, or SQLite files, dropped after."""
    if options.db == "postgresql":
        with scratch_database(options.pg_admin_url, "soak_trustly") as trustly, \
             scratch_database(options.pg_admin_url, "soak_cms") as cms:
            yield trustly, cms
        return
    with tempfile.TemporaryDirectory(prefix="soak-sqlite-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'trustly.db'}", f"sqlite:///{Path(tmp) / 'cms.db'}"


@contextmanager
def running_sims(trustly_db: str, cms_db: str) -> Iterator[tuple[Server, Server]]:
    """Both sims under the production serving, wired to each other, the admin token set.

    bench.sims.sims() starts them the same way but without an admin token (its scrubbed
    environment has no way to add one), so the control API the gates reconcile through
    would be off; this is that wiring plus SCANPAY_ADMIN_TOKEN, on bench's `serve()`.
    """
    serving, unpinned = SERVINGS[DEFAULT_SERVING], Pinning(frozenset(), frozenset())
    trustly_port, cms_port = free_port(), free_port()
    trustly_env = scrubbed_env({
        "SCANPAY_TRUSTLY_DATABASE_URL": trustly_db, "SCANPAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "SCANPAY_TRUSTLY_CMS_URL": f"http://127.0.0.1:{cms_port}",
        "SCANPAY_TRUSTLY_PUBLIC_URL": f"http://127.0.0.1:{trustly_port}"})
    cms_env = scrubbed_env({
        "SCANPAY_CMS_DATABASE_URL": cms_db, "SCANPAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "SCANPAY_CMS_TRUSTLY_URL": f"http://127.0.0.1:{trustly_port}"})
    with serve("sim_trustly", TRUSTLY_APP, serving, trustly_env, Ready(TRUSTLY_READY),
               unpinned, trustly_port) as trustly, \
         serve("sim_cms", CMS_APP, serving, cms_env, Ready(CMS_TOKEN_REQUEST), unpinned,
               cms_port) as cms:
        yield trustly, cms


class RssSampler(threading.Thread):
    """Reads every sim process's RSS every 10 s, and at half time and at the end of the run
    time exactly, appending rows to the CSV as it goes (a killed run keeps what it read)."""

    def __init__(self, servers: Sequence[Server], run_s: float, csv_path: Path) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.servers, self.csv_path = list(servers), csv_path
        grid = {k * SAMPLE_EVERY_S for k in range(int(run_s // SAMPLE_EVERY_S) + 1)}
        self.marks = sorted(grid | {run_s / 2, float(run_s)})
        self.samples: list[RssSample] = []
        self.stopped = threading.Event()
        self.started_at = monotonic()

    def run(self) -> None:
        """Sample on the marks, then every 10 s until stopped (the gates' settling)."""
        with self.csv_path.open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["elapsed_s", "sim", "pid", "role", "rss_mib"])
            mark = 0.0
            for mark in self.marks:
                if self.stopped.wait(max(0.0, self.started_at + mark - monotonic())):
                    return
                self._round(out, handle)
            while not self.stopped.wait(max(0.0, self.started_at + mark + SAMPLE_EVERY_S
                                            - monotonic())):
                mark += SAMPLE_EVERY_S
                self._round(out, handle)

    def _round(self, out: Any, handle: Any) -> None:
        elapsed = round(monotonic() - self.started_at, 1)
        for server in self.servers:
            for pid in server.pids():
                rss = rss_mb(pid)
                if rss is None:
                    continue  # it ended while we looked
                sample = RssSample(elapsed, server.name, pid,
                                   "master" if pid == server.pid else "worker", round(rss, 2))
                self.samples.append(sample)
                out.writerow([sample.elapsed_s, sample.sim, sample.pid, sample.role,
                              sample.rss_mib])
        handle.flush()


def _run_load(options: SoakOptions, trustly: Server, cms: Server) -> tuple[int, str]:
    """`scanpay load` (the floor) against the sims; its output is shown and kept."""
    command = [sys.executable, "-m", "harness.cli.main", "load",
               "--trustly-url", f"http://127.0.0.1:{trustly.port}",
               "--cms-url", f"http://127.0.0.1:{cms.port}", "--users", str(options.users),
               "--spawn-rate", f"{min(SPAWN_RATE, float(options.users)):g}",
               "--run-time", str(options.run_s), "--results-dir", str(options.results_dir)]
    env = {**os.environ, "SCANPAY_ADMIN_TOKEN": ADMIN_TOKEN, "PYTHONUNBUFFERED": "1"}
    kept: list[str] = []
    proc = subprocess.Popen(command, env=env, cwd=REPO_ROOT,  # noqa: S603
                            stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout is not None
        with (options.results_dir / "load.log").open("w") as log:
            for raw in proc.stdout:
                line = raw.decode(errors="replace")
                sys.stdout.write(line)
                sys.stdout.flush()
                log.write(line)
                kept.append(line)
        code = proc.wait()
    finally:
        _stop(proc)  # Locust and its children, by process group, whatever happened
    return code, "".join(kept)


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: servers stopped, databases dropped


def soak(options: SoakOptions) -> dict[str, Any]:
    """Run the soak and return its summary (also written to soak.json)."""
    options.results_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        trustly_db, cms_db = stack.enter_context(_databases(options))
        trustly, cms = stack.enter_context(running_sims(trustly_db, cms_db))
        sampler = RssSampler([trustly, cms], options.run_s, options.results_dir / "rss.csv")
        sampler.start()
        try:
            code, output = _run_load(options, trustly, cms)
        finally:
            sampler.stopped.set()
            sampler.join(timeout=5)
    outcome = read_load_outcome(code, output, options.results_dir)
    growth = rss_growth(sampler.samples, options.run_s)
    reasons = problems(outcome, growth)
    summary = {
        "users": options.users, "minutes": options.minutes, "db": options.db,
        "serving": SERVINGS[DEFAULT_SERVING].describe, "machine": machine(),
        "locust": {"exit_code": outcome.exit_code, "requests": outcome.requests,
                   "failures": outcome.failures, "result": outcome.result_line,
                   "reconciliation": list(outcome.reconciliation),
                   "reconciliation_verdict": outcome.reconciliation_verdict},
        "rss": {sim: {**asdict(g), "growth_pct": round(g.pct, 2)} for sim, g in growth.items()},
        "max_growth_pct": MAX_GROWTH_PCT,
        "verdict": "FAIL" if reasons else "PASS", "problems": reasons,
    }
    (options.results_dir / "soak.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary as printed at the end."""
    locust = summary["locust"]
    lines = [f"== soak: {summary['users']} users, {summary['minutes']:g} min, {summary['db']} ==",
             f"locust    exit code {locust['exit_code']}, {locust['failures']} failures of "
             f"{locust['requests']} requests, {locust['result'] or 'no result line'}",
             f"reconcile {locust['reconciliation_verdict'] or 'missing'}"]
    for sim, g in summary["rss"].items():
        lines.append(f"rss       {sim}: {g['half_mib']:.1f} MiB at {g['half_s']:g} s, "
                     f"{g['end_mib']:.1f} MiB at {g['end_s']:g} s: {g['growth_pct']:+.1f}%")
    verdict = summary["verdict"]
    lines.append(f"{verdict}: zero failures, gates green, RSS growth < "
                 f"{summary['max_growth_pct']:g}% over the last half"
                 + (f" ({'; '.join(summary['problems'])})" if summary["problems"] else ""))
    return lines


def _parse(argv: Sequence[str] | None) -> SoakOptions:
    parser = argparse.ArgumentParser(prog="python -m loadtests.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50, help="Locust users (50)")
    parser.add_argument("--minutes", type=float, default=10.0, help="run time (10)")
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql",
                        help="the sims' databases (postgresql: scratch databases, dropped after)")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL,
                        help="PostgreSQL database to create and drop scratch databases from")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR,
                        help="Locust's CSV/HTML, load.log, rss.csv, soak.json (load-results/soak)")
    args = parser.parse_args(argv)
    if not 1 <= args.users <= 500 or not 0 < args.minutes <= 60:
        parser.error("--users must be 1..500 and --minutes in (0, 60]")
    return SoakOptions(args.users, args.minutes, args.db, args.results_dir, args.pg_admin_url)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak, print the summary; 0 on PASS, 1 on FAIL, 2 without PostgreSQL."""
    options = _parse(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        summary = soak(options)
    except PostgresUnavailable as exc:
        print(f"soak not run: {exc}\n(give --pg-admin-url, or --db sqlite)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soak interrupted: servers stopped, scratch databases dropped, no verdict",
              file=sys.stderr)
        return 130
    print("\n".join(["", *summary_lines(summary)]))
    print(f"results in {options.results_dir}")
    return 0 if summary["verdict"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
