"""The extended reliability tier, run by hand or nightly: `make soak` (not in `make test`).

    python -m tests.reliability.soak --cycles 200 --in-flight 50 --fundings 10000 --seeds 50

runs `--cycles` kill -9 cycles (each sim at each named point in turn, `--in-flight` fundings
under way at each crash), then `--seeds` seeds of `--fundings` fundings each through seeded
network faults between TPAS and the CMS, every cycle and seed checked for exactly-once
(`tests.reliability.driver`). It prints progress as it goes and a summary at the end, with the
seed to replay it (`--seed`, or SCANPAY_SEED), and exits 1 at the first failure.
The sims run on SQLite files, or on PostgreSQL when SCANPAY_TEST_DATABASE_URL is set.
`--json PATH` writes the figures for docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

from simkit.clock import monotonic
from tests.reliability.driver import (
    PHONES_POSTGRESQL,
    PHONES_SQLITE,
    READY_WITHIN_S,
    Figures,
    crash_cycles,
    network_faults,
    reliability_stack,
)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.soak",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=200, help="kill -9 cycles (default 200)")
    parser.add_argument("--in-flight", type=int, default=50,
                        help="fundings under way at each crash (default 50)")
    parser.add_argument("--fundings", type=int, default=10_000,
                        help="fundings per network-fault seed (default 10000)")
    parser.add_argument("--seeds", type=int, default=50, help="network-fault seeds (default 50)")
    parser.add_argument("--phones", type=int, default=None,
                        help="phones paying at once in the network-fault tier (default "
                             f"{PHONES_SQLITE} on SQLite, {PHONES_POSTGRESQL} on PostgreSQL)")
    parser.add_argument("--seed", type=int, default=None,
                        help="first seed (default: SCANPAY_SEED, else random)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    return parser.parse_args(argv)


def _figures_json(figures: Figures) -> dict[str, object]:
    ready = sorted(figures.ready_s)
    return {
        "fundings": figures.fundings, "credited": figures.credited,
        "notCredited": figures.not_credited, "phoneRequestsCut": figures.unanswered,
        "crashes": dict(sorted(figures.crashes.items())),
        "faultsFired": dict(sorted(figures.faults.items())),
        "outcomes": dict(sorted(figures.outcomes.items())),
        "readyAfterRestartS": {"max": round(ready[-1], 2),
                               "median": round(ready[len(ready) // 2], 2)} if ready else None,
        "definiteWithinS": round(max(figures.settle_s), 2) if figures.settle_s else None,
        "wallS": round(figures.wall_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the soak; 0 when every cycle and seed passed, 1 at the first failure."""
    args = _arguments(argv)
    given = args.seed if args.seed is not None else os.environ.get("SCANPAY_SEED")
    seed = int(given) if given is not None else random.SystemRandom().randrange(1, 2**31)
    print(f"soak: SCANPAY_SEED={seed}: {args.cycles} kill -9 cycles x {args.in_flight} in "
          f"flight, then {args.seeds} seeds x {args.fundings} fundings", flush=True)

    def log(line: str) -> None:
        print(line, flush=True)

    started = monotonic()
    crashes, network = Figures(), Figures()
    try:
        with tempfile.TemporaryDirectory(prefix="scanpay-soak-") as tmp, \
                reliability_stack(Path(tmp)) as driver:
            if args.cycles:
                log("kill -9 at named points:")
                crashes = crash_cycles(driver, seed, args.cycles, args.in_flight, log)
            if args.seeds:
                log("network faults between TPAS and the CMS:")
                for offset in range(args.seeds):
                    network.add(network_faults(driver, seed + offset, args.fundings,
                                               phones=args.phones, log=log))
    except AssertionError as exc:
        print(f"soak: FAIL after {monotonic() - started:.0f}s: {exc}\n"
              f"replay: python -m tests.reliability.soak --seed {seed} ...", flush=True)
        return 1
    slow = [s for s in crashes.ready_s if s >= READY_WITHIN_S]
    print(f"soak: kill -9: {crashes.summary()}")
    print(f"soak: network: {network.summary()}")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "seed": seed, "arguments": {"cycles": args.cycles, "inFlight": args.in_flight,
                                        "fundings": args.fundings, "seeds": args.seeds},
            "crash": _figures_json(crashes), "network": _figures_json(network),
            "wallS": round(monotonic() - started, 1),
        }, indent=2) + "\n")
    if slow:
        print(f"soak: FAIL: {len(slow)} restarts took {READY_WITHIN_S}s or more: {slow}")
        return 1
    print(f"soak: PASS in {monotonic() - started:.0f}s (SCANPAY_SEED={seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
