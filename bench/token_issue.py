"""`python -m bench.token_issue`: the QR token endpoint against a bare Flask endpoint.

Both run under the production server (gunicorn, one worker per core, same settings), are
driven by the same load generator in the same run, and the report gives requests/s, p50 and
p99 for each and the token/bare ratios. The target is a token endpoint that serves at least
half the bare endpoint's throughput.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.bare_app import BARE_PATH
from bench.common import HttpRequest, LoadResult, ServerConfig, gunicorn, run_load

TOKEN_PATH = "/auth-service/api/oauth2/qrcode/token"
TRUSTLY_WSGI = "sim_trustly.wsgi:create()"
BARE_WSGI = "bench.bare_app:create_app()"
TARGET_RATIO = 0.5
_BODY = json.dumps({"merchantId": "demo-merchant", "egmId": "EGM-001"}).encode()
_AUTH = "Basic " + base64.b64encode(b"demo-access-id:demo-access-key").decode()


def _request(path: str) -> HttpRequest:
    headers = {"Authorization": _AUTH, "Content-Type": "application/json"}
    return HttpRequest(path=path, body=_BODY, headers=headers)


@dataclass(frozen=True)
class BenchConfig:
    """One run: how much load, how much concurrency, which server settings, which database."""

    requests: int = 3000
    warmup: int = 300
    concurrency: int = 8  # the CLI default is 4 per worker: no worker waits for the client
    server: ServerConfig = field(default_factory=lambda: ServerConfig(os.cpu_count() or 1))
    database_url: str | None = None


@dataclass(frozen=True)
class BenchReport:
    """The two measurements and their ratios."""

    bare: LoadResult
    token: LoadResult
    load_before: float  # the machine's 1-minute load average before the run: noise warning

    @property
    def rps_ratio(self) -> float:
        """Token throughput as a fraction of the bare endpoint's."""
        return self.token.rps / self.bare.rps

    @property
    def p50_ratio(self) -> float:
        """How many times the bare endpoint's median latency the token endpoint takes."""
        return self.token.percentile_ms(50) / self.bare.percentile_ms(50)

    @property
    def server_cpu_ratio(self) -> float | None:
        """Server CPU time per token request over that per bare request (None if unknown)."""
        if self.token.server_cpu_s is None or not self.bare.server_cpu_s:
            return None
        return (self.token.server_cpu_s / self.token.requests) / (
            self.bare.server_cpu_s / self.bare.requests
        )

    @property
    def passed(self) -> bool:
        """True when the token endpoint reaches the target share of the bare throughput."""
        return self.rps_ratio >= TARGET_RATIO

    def as_dict(self) -> dict[str, object]:
        """Everything, for `--json`."""
        return {
            "targets": [self.bare.as_dict(), self.token.as_dict()],
            "ratio": {
                "rps": round(self.rps_ratio, 3), "p50": round(self.p50_ratio, 3),
                "server_cpu_per_req": (
                    None if self.server_cpu_ratio is None else round(self.server_cpu_ratio, 3)
                ),
            },
            "target_rps_ratio": TARGET_RATIO, "passed": self.passed,
            "cpu_count": os.cpu_count(), "load_average_before": round(self.load_before, 2),
        }


def _measure(
    name: str, app_spec: str, req: HttpRequest, config: BenchConfig,
    env: dict[str, str] | None = None,
) -> LoadResult:
    with gunicorn(app_spec, config.server, ready=req, env=env) as server:
        run_load(f"{name} warm-up", server.port, req, config.warmup, config.concurrency)
        cpu_before = server.cpu_seconds()
        result = run_load(name, server.port, req, config.requests, config.concurrency)
        cpu_after = server.cpu_seconds()
    if cpu_before is not None and cpu_after is not None:
        result.server_cpu_s = cpu_after - cpu_before
    return result


def run_benchmark(config: BenchConfig) -> BenchReport:
    """Measure the bare endpoint, then the token endpoint, with identical server and load."""
    load_before = os.getloadavg()[0]
    bare = _measure("bare flask", BARE_WSGI, _request(BARE_PATH), config)
    with tempfile.TemporaryDirectory(prefix="bench-trustly-") as tmp:
        url = config.database_url or f"sqlite:///{Path(tmp) / 'trustly.db'}"
        # The production entry point, configured by the environment as in a deployment;
        # defaults otherwise (no control API, no journal).
        token = _measure(
            "qr token", TRUSTLY_WSGI, _request(TOKEN_PATH), config,
            env={"SCANPAY_TRUSTLY_DATABASE_URL": url},
        )
    return BenchReport(bare=bare, token=token, load_before=load_before)


def print_report(report: BenchReport, config: BenchConfig) -> None:
    """A table of both targets, the ratios and the verdict against the target."""
    from rich.console import Console
    from rich.table import Table

    server = config.server
    table = Table(title=(
        f"QR token vs bare Flask: gunicorn {server.worker_class}, {server.workers} workers"
        f" x {server.threads} threads, {config.concurrency} client connections"
    ))
    columns = ("target", "requests", "errors", "req/s", "p50 ms", "p99 ms",
               "server CPU/req ms", "client CPU/req ms")
    for column in columns:
        table.add_column(column, justify="left" if column == "target" else "right")
    for r in (report.bare, report.token):
        figures = r.as_dict()
        server_cpu = figures["server_cpu_ms_per_req"]
        table.add_row(
            r.name, str(r.requests), str(r.errors), f"{r.rps:.0f}",
            f"{r.percentile_ms(50):.2f}", f"{r.percentile_ms(99):.2f}",
            "n/a" if server_cpu is None else f"{server_cpu:.2f}",
            f"{figures['client_cpu_ms_per_req']:.2f}",
        )
    console = Console(width=max(Console().width, 110))
    console.print(table)
    cpu = report.server_cpu_ratio
    console.print(
        f"token/bare ratios: throughput {report.rps_ratio:.2f}, p50 {report.p50_ratio:.2f}, "
        f"server CPU per request {'n/a' if cpu is None else f'{cpu:.2f}'}"
    )
    if report.load_before > (os.cpu_count() or 1) / 2:
        console.print(f"[yellow]note:[/] load average was {report.load_before:.1f} before the "
                      "run; other work on this machine makes the figures noisy")
    verdict = "[green]PASS[/]" if report.passed else "[red]BELOW[/]"
    console.print(f"{verdict}: token endpoint at {report.rps_ratio:.0%} of bare throughput "
                  f"(target >= {TARGET_RATIO:.0%})")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.token_issue", description=__doc__)
    parser.add_argument("--requests", type=int, default=BenchConfig.requests,
                        help="measured requests per target (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=BenchConfig.warmup)
    parser.add_argument("--concurrency", type=int,
                        help="client threads, one connection each (default: 4 per worker)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--worker-class", choices=("sync", "gthread"), default="sync")
    parser.add_argument("--threads", type=int, default=1, help="threads per gthread worker")
    parser.add_argument("--db", help="database URL for sim_trustly (default: SQLite in a temp dir)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 1 if any request of either target did not answer 200."""
    args = _parse_args(argv)
    config = BenchConfig(
        requests=args.requests, warmup=args.warmup,
        concurrency=args.concurrency or 4 * args.workers,
        server=ServerConfig(args.workers, args.worker_class, args.threads), database_url=args.db,
    )
    report = run_benchmark(config)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print_report(report, config)
    failed = report.bare.errors or report.token.errors
    if failed:
        print(f"FAILED: non-200 answers: bare {dict(report.bare.statuses)}, "
              f"token {dict(report.token.statuses)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
