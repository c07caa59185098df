"""What one `make bench` invocation shares: its options, and measuring one phase on a server."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import DEFAULT_RESULTS_DIR, Pinning
from bench.loadgen import PhaseStats, Requests, closed_loop
from bench.servers import DEFAULT_SERVING, SERVINGS, Server, Serving

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class RunOptions:
    """How long, how hard, on which stack and cores, and where results go."""

    duration_s: float = 5.0  # each measured phase
    warmup_s: float = 1.0  # before each measured phase, not counted
    connections: int = 64  # QR Code API phases (the p99 is at 64)
    clients: int = 8  # fundings and pgbench
    players: int = 8  # concurrent scan-then-pay flows
    serving: Serving = field(default_factory=lambda: SERVINGS[DEFAULT_SERVING])
    pinning: Pinning = field(default_factory=Pinning.default)
    pg_admin_url: str = PG_ADMIN_URL  # where scratch databases are created and dropped
    results_dir: Path = DEFAULT_RESULTS_DIR
    smoke: bool = False  # tiny counts: the benchmarks still run, the figures mean nothing

    @classmethod
    def smoke_run(cls, **changes: object) -> RunOptions:
        """The `--smoke` settings: a fraction of a second per phase, few connections."""
        values: dict[str, object] = {"duration_s": 0.3, "warmup_s": 0.1, "connections": 4,
                                     "clients": 2, "players": 2, "smoke": True}
        values.update(changes)
        return cls(**values)  # type: ignore[arg-type]


def measure(server: Server, name: str, requests: Requests, connections: int,
            options: RunOptions, expected: int = 200) -> PhaseStats:
    """Warm `server` up, then load it for the phase's duration with its CPU time and RSS read
    from /proc before and after."""
    asyncio.run(closed_loop("warm-up", server.port, requests, connections, options.warmup_s,
                            expected))
    cpu_before = server.cpu_seconds()
    stats = asyncio.run(closed_loop(name, server.port, requests, connections, options.duration_s,
                                    expected))
    cpu_after = server.cpu_seconds()
    if cpu_before is not None and cpu_after is not None:
        stats.server_cpu_s = cpu_after - cpu_before
    stats.server_rss_mb = server.rss_mb()
    return stats
