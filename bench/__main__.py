"""`python -m bench` (`make bench`): every benchmark, one results file each and a summary.

    python -m bench                          # all, a few minutes
    python -m bench --duration 30 --warmup 5 # longer phases, steadier figures
    python -m bench --only qr_api --serving gunicorn-gthread
    python -m bench --smoke --results-dir /tmp/x   # tiny counts: checks that it still runs

Exit status 1 when something did not work (a wrong answer, a flow not CREDITED, a
reconciliation that does not add up); a figure BELOW its target is a finding, not a failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import flows, fundings, qr_api
from bench.common import DEFAULT_RESULTS_DIR, Pinning
from bench.report import BenchResult, machine, print_results, write_results
from bench.run import PG_ADMIN_URL, RunOptions
from bench.servers import DEFAULT_SERVING, SERVINGS

BENCHMARKS: dict[str, Callable[[RunOptions, argparse.Namespace], BenchResult]] = {
    "qr_api": lambda o, a: qr_api.run(o, with_wiremock=not a.no_wiremock),
    "fundings": lambda o, a: fundings.run(o),
    "flows": lambda o, a: flows.run(o, databases=tuple(a.flow_db)),
}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS),
                        help="run only this benchmark (repeatable)")
    parser.add_argument("--duration", type=float, help="seconds per measured phase (5)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per phase (1)")
    parser.add_argument("--connections", type=int, help="QR Code API connections (64)")
    parser.add_argument("--clients", type=int, help="funding clients and pgbench clients (8)")
    parser.add_argument("--players", type=int, help="concurrent scan-then-pay players (8)")
    parser.add_argument("--serving", choices=sorted(SERVINGS), default=DEFAULT_SERVING,
                        help="server stack for every app of the run")
    parser.add_argument("--server-cpus", default=None, help="cores of the servers (0)")
    parser.add_argument("--load-cpus", default=None, help="cores of the load generator (1)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin anything")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL,
                        help="PostgreSQL database to create and drop scratch databases from")
    parser.add_argument("--flow-db", action="append", choices=("sqlite", "postgresql"),
                        help="databases of the flow benchmark (both by default)")
    parser.add_argument("--no-wiremock", action="store_true", help="skip the WireMock phase")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny counts: check the benchmarks run; the figures mean nothing")
    args = parser.parse_args(argv)
    args.flow_db = args.flow_db or ["sqlite", "postgresql"]
    return args


def _options(args: argparse.Namespace) -> RunOptions:
    serving = SERVINGS[args.serving]
    if not serving.available():
        sys.exit(f"--serving {args.serving}: {serving.requires} is not installed")
    if args.no_pin:
        pinning = Pinning(frozenset(), frozenset())
    elif args.server_cpus is not None or args.load_cpus is not None:
        pinning = Pinning.parse(args.server_cpus or "", args.load_cpus or "")
    else:
        pinning = Pinning.default()
    changes: dict[str, object] = {
        "serving": serving, "pinning": pinning, "pg_admin_url": args.pg_admin_url,
        "results_dir": args.results_dir,
    }
    for name, key in (("duration", "duration_s"), ("warmup", "warmup_s"),
                      ("connections", "connections"), ("clients", "clients"),
                      ("players", "players")):
        if getattr(args, name) is not None:
            changes[key] = getattr(args, name)
    return RunOptions.smoke_run(**changes) if args.smoke else RunOptions(**changes)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmarks in order, write the results, print the tables."""
    args = _parse(argv)
    options = _options(args)
    options.pinning.pin_this_process()  # the load generator (and pgbench) off the server cores
    run = {**machine(), "serving": options.serving.name, "pinning": options.pinning.describe(),
           "duration_s": options.duration_s, "warmup_s": options.warmup_s,
           "smoke": options.smoke}
    results = []
    for name in args.only or list(BENCHMARKS):
        print(f"== {name} ...", flush=True)
        try:
            results.append(BENCHMARKS[name](options, args))
        except Exception as exc:
            broken = BenchResult(name, name)
            broken.problems.append(f"{type(exc).__name__}: {exc}")
            results.append(broken)
    summary = write_results(options.results_dir, results, run)
    print_results(results)
    print(f"results: {summary.parent}/ ({', '.join(r.name + '.json' for r in results)}, "
          "summary.json)")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
