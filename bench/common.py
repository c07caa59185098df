"""What every benchmark shares: ports, core pinning, /proc readings and percentiles.

The benchmarks run the servers under test on one core and the load generator on another
(`Pinning`), so the load generator cannot steal the server's CPU and the server's CPU time per
request, read from /proc, is the cost of the request alone. Linux only for the /proc figures;
elsewhere they are reported as unknown.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Ports the machine's other services use; a benchmark server must never take them.
RESERVED_PORTS = frozenset({1883, 3306, 4222, 5432, 5672, 6379, 8089, 8710, 8720})
DEFAULT_RESULTS_DIR = REPO_ROOT / "bench" / "results"


def free_port() -> int:
    """A free TCP port on 127.0.0.1, never one of the machine's reserved service ports."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port


@dataclass(frozen=True)
class Pinning:
    """Which cores the servers get and which the load generator (and pgbench) gets.

    Empty sets mean "not pinned" (a one-core machine, or `--no-pin`).
    """

    server: frozenset[int]
    load: frozenset[int]

    @classmethod
    def default(cls) -> Pinning:
        """Server on core 0, load on core 1, when this process may use both."""
        available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if len(available) < 2:
            return cls(frozenset(), frozenset())
        return cls(frozenset({available[0]}), frozenset({available[1]}))

    @classmethod
    def parse(cls, server: str, load: str) -> Pinning:
        """From `--server-cpus 0 --load-cpus 1` (comma-separated core numbers)."""
        def cores(text: str) -> frozenset[int]:
            return frozenset(int(part) for part in text.split(",") if part.strip())
        return cls(cores(server), cores(load))

    def pin_this_process(self) -> None:
        """Move the calling process (the load generator) onto the load cores."""
        if self.load and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, self.load)

    def taskset(self, argv: Sequence[str], which: str = "server") -> list[str]:
        """`argv` prefixed with `taskset -c <cores>` (unchanged when not pinned)."""
        cores = self.server if which == "server" else self.load
        if not cores:
            return list(argv)
        return ["taskset", "-c", ",".join(str(c) for c in sorted(cores)), *argv]

    def describe(self) -> dict[str, list[int]]:
        """The cores, for the results file."""
        return {"server": sorted(self.server), "load": sorted(self.load)}


def _stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def process_tree(root: int) -> list[int]:
    """`root` and every descendant process alive now (a server's master and its workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(_stat_fields(int(stat.parent.name))[1])
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def cpu_seconds(pids: Iterable[int]) -> float | None:
    """User + system CPU time used so far by these processes (None when /proc is missing)."""
    total, ticks = 0.0, os.sysconf("SC_CLK_TCK")
    seen = False
    for pid in pids:
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        seen = True
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total if seen else None


def rss_mb(pid: int) -> float | None:
    """Resident set size of one process in MiB (VmRSS), None when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def scrubbed_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without `SCANPAY_*` variables (a run must not pick up whatever the
    shell configures), with the checkout on PYTHONPATH, plus `extra`."""
    paths = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SCANPAY_")}
    return {**inherited, **(extra or {}), "PYTHONPATH": os.pathsep.join(paths)}
