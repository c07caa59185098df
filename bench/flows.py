"""Full scan-then-pay flows per second, per-step p50/p99, on SQLite and on PostgreSQL.

Both sims run under the production serving on the server cores, wired to each other (see
`bench.sims`). `--players` (8) players on the load core each loop over their own EGMs, as
loadtests/locustfile.py's ScanThenPayUser does, over HTTP only:

1. **cms qr**: the EGM asks its CMS for a QR, `POST /cws/v1/egms/{id}/qr` (Bearer token of
   tpas-client, obtained once per player); the CMS gets the token from Trustly.
2. **scan**: the phone opens it, `GET /api/v1/scan/{code}`: 200, state ACTIVE.
3. **pay**: `POST /api/v1/scan/{code}/payments`, amount 100, a new demo-bank username per
   payment (so the UBAI's daily limit never stops a flow): 201 with a definite outcome, or
   202 and then **poll** `GET /api/v1/payments/{id}` until it is definite.

A flow counts when the payment ended CREDITED; anything else is an error. At the end the
run must reconcile exactly: the players' credited total = Trustly's CREDITED payments = the
CMS's applied fundings = the increase of the EGMs' meters, with no payment left in another
state.

Reference, same run and serving: the bare Flask endpoint's req/s divided by the requests a
flow costs the servers (the players' requests per flow, plus the two calls between the sims:
the CMS's token request and TPAS's funding), i.e. the flows/s of a server that did nothing
but framework work. Target: >= 150 flows/s on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bench.bare_app import BARE_PATH
from bench.common import scrubbed_env
from bench.loadgen import Client, HttpError, PhaseStats, build_request
from bench.pg import PostgresUnavailable, scratch_database
from bench.qr_api import BARE_APP, BODY, HEADERS
from bench.report import BenchResult, Check
from bench.run import RunOptions, measure
from bench.servers import Ready, serve
from bench.sims import Sims, applied_fundings, cms_access_token, meter_total, payments_by_status
from bench.sims import sims as running_sims
from simkit.wait import poll_until_async

TARGET_FLOWS_PER_S = 150.0
AMOUNT = 100
CALLS_BETWEEN_SIMS = 2  # the CMS's QR token request to Trustly, TPAS's funding call to the CMS
POLL_INTERVAL_S = 0.01
POLL_TIMEOUT_S = 10.0  # a payment still open after this is a failed flow
STEPS = ("cms qr", "scan", "pay", "poll")
DEFINITE = frozenset({"CREDITED", "REJECTED_VOIDED", "FAILED_VOIDED"})


class FlowFailed(Exception):
    """A step answered something a working flow never gets."""


@dataclass
class FlowRun:
    """What the players measured: per step, per flow, and the credited total."""

    label: str
    steps: dict[str, PhaseStats] = field(default_factory=dict)
    flow: PhaseStats = field(default_factory=lambda: PhaseStats("flow"))
    credited: int = 0
    requests: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.flow.name = f"{self.label}: flow (QR to CREDITED)"
        expected = {"cms qr": 200, "scan": 200, "pay": 201, "poll": 200}
        for step in STEPS:
            self.steps[step] = PhaseStats(f"{self.label}: {step}", expected[step])


async def _step(client: Client, run: FlowRun, step: str, method: str, path: str,
                body: bytes = b"", headers: dict[str, str] | None = None,
                ok: tuple[int, ...] = (200,)) -> dict[str, object]:
    began = time.perf_counter()
    try:
        status, raw = await client.request(method, path, body, headers)
    except (OSError, HttpError, TimeoutError) as exc:
        run.steps[step].statuses[0] += 1
        raise FlowFailed(f"{step}: {type(exc).__name__}") from exc
    run.requests += 1
    stats = run.steps[step]
    stats.latencies_s.append(time.perf_counter() - began)
    stats.statuses[stats.expected if status in ok else status] += 1
    if status not in ok:
        raise FlowFailed(f"{step}: HTTP {status} {raw[:200]!r}")
    answer: dict[str, object] = json.loads(raw)
    return answer


async def _flow(cms: Client, trustly: Client, token: str, egm: str, run: FlowRun) -> None:
    began = time.perf_counter()
    qr = await _step(cms, run, "cms qr", "POST", f"/cws/v1/egms/{egm}/qr",
                     headers={"Authorization": f"Bearer {token}"})
    code = urlsplit(str(qr["url"])).path.rpartition("/scan/")[2]
    scan = await _step(trustly, run, "scan", "GET", f"/api/v1/scan/{code}")
    if scan.get("state") != "ACTIVE":
        raise FlowFailed(f"scan: state {scan.get('state')}")
    body = {"amount": AMOUNT, "currency": "USD",
            "bank": {"username": f"bench-{uuid.uuid4().hex[:16]}", "password": "bench"}}
    payment = await _step(trustly, run, "pay", "POST", f"/api/v1/scan/{code}/payments",
                          json.dumps(body).encode(), {"Content-Type": "application/json"},
                          ok=(201, 202))
    looks = 0

    async def definite() -> dict[str, object] | None:
        """The first look is the pay step's answer; each later one asks Trustly again."""
        nonlocal payment, looks
        looks += 1
        if looks > 1:
            payment = await _step(trustly, run, "poll", "GET",
                                  f"/api/v1/payments/{payment['paymentId']}")
        return payment if payment.get("status") in DEFINITE else None

    await poll_until_async(definite, timeout_s=POLL_TIMEOUT_S, interval_s=POLL_INTERVAL_S)
    if payment.get("status") != "CREDITED":
        raise FlowFailed(f"payment ended {payment.get('status')}")
    run.credited += AMOUNT
    run.flow.statuses[200] += 1
    run.flow.latencies_s.append(time.perf_counter() - began)


async def _player(sims: Sims, token: str, egms: list[str], until: float, run: FlowRun) -> None:
    cms, trustly = Client(sims.cms.port), Client(sims.trustly.port)
    try:
        for n in range(10**9):
            if time.perf_counter() >= until:
                break
            try:
                await _flow(cms, trustly, token, egms[n % len(egms)], run)
            except FlowFailed as exc:
                run.failures[str(exc)[:120]] += 1
                run.flow.statuses[0] += 1
    finally:
        cms.close()
        trustly.close()


def _drive(sims: Sims, token: str, players: int, seconds: float, run: FlowRun) -> float:
    own = [[e for i, e in enumerate(sims.egms) if i % players == p] for p in range(players)]
    began = time.perf_counter()

    async def all_players() -> None:
        until = time.perf_counter() + seconds
        await asyncio.gather(*(_player(sims, token, own[p], until, run) for p in range(players)))

    asyncio.run(all_players())
    return time.perf_counter() - began


def _one_database(options: RunOptions, label: str, trustly_db: str | None, cms_db: str | None,
                  result: BenchResult) -> FlowRun:
    run = FlowRun(label)
    warm = FlowRun(f"{label} warm-up")
    with running_sims(options, trustly_db, cms_db, options.players) as sims:
        token = cms_access_token(sims.cms)
        meters_before = meter_total(sims.cms, token)
        _drive(sims, token, options.players, options.warmup_s, warm)
        cpu_before = (sims.trustly.cpu_seconds(), sims.cms.cpu_seconds())
        client_cpu = time.process_time()
        elapsed = _drive(sims, token, options.players, options.duration_s, run)
        cpu_after = (sims.trustly.cpu_seconds(), sims.cms.cpu_seconds())
        run.flow.client_cpu_s = time.process_time() - client_cpu
        run.flow.server_rss_mb = sims.trustly.rss_mb() + sims.cms.rss_mb()
        meters_after = meter_total(sims.cms, token)
        trustly_side = payments_by_status(sims.trustly_db)
        cms_side = applied_fundings(sims.cms_db)
    for stats in (run.flow, *run.steps.values()):
        stats.elapsed_s = elapsed
    cpu = {}
    for name, before, after in zip(("trustly", "cms"), cpu_before, cpu_after, strict=True):
        cpu[name] = None if before is None or after is None else after - before
    if None not in cpu.values():
        run.flow.server_cpu_s = sum(v for v in cpu.values() if v is not None)
    flows = run.flow.statuses[200]
    for failure, count in (warm.failures + run.failures).items():
        result.problems.append(f"{label}: {count} x {failure}")
    players_total = warm.credited + run.credited
    credited = trustly_side.get("CREDITED", (0, 0))[1]
    others = {s: v for s, v in trustly_side.items() if s != "CREDITED"}
    sums = {"players": players_total, "trustly CREDITED": credited,
            "cms APPLIED": cms_side[1], "meters": meters_after - meters_before}
    if len(set(sums.values())) != 1 or others:
        result.problems.append(f"{label}: reconciliation does not add up: {sums}, "
                               f"other payments {others}")
    result.figures[label] = {
        "flows_per_s": flows / elapsed if elapsed else 0.0, "flows": flows,
        "requests_per_flow": run.requests / flows if flows else None,
        "server_cpu_ms_per_flow": {k: None if v is None or not flows else v * 1000 / flows
                                   for k, v in cpu.items()},
        "steps": {s: {"p50_ms": st.p_ms(50), "p99_ms": st.p_ms(99), "count": st.requests}
                  for s, st in run.steps.items()},
        "reconciliation": sums, "reconciled": len(set(sums.values())) == 1 and not others,
    }
    return run


def run(options: RunOptions, databases: tuple[str, ...] = ("sqlite", "postgresql")
        ) -> BenchResult:
    """The bare reference, then the flows on each database, the reconciliations and checks."""
    result = BenchResult("flows", f"Scan-then-pay flows: both sims on {options.serving.describe}"
                                  f", {options.players} players")
    bare_raw = build_request("POST", BARE_PATH, BODY, HEADERS)
    with serve("bare flask", BARE_APP, options.serving, scrubbed_env(), Ready(bare_raw),
               options.pinning) as server:
        bare = measure(server, "bare flask (reference)", bare_raw, options.connections, options)
    result.phases.append(bare)
    for database in databases:
        try:
            if database == "sqlite":
                flow_run = _one_database(options, "sqlite", None, None, result)
            else:
                with scratch_database(options.pg_admin_url, "bench_flow_trustly") as t_db, \
                     scratch_database(options.pg_admin_url, "bench_flow_cms") as c_db:
                    flow_run = _one_database(options, "postgresql", t_db, c_db, result)
        except PostgresUnavailable as exc:
            result.notes.append(f"{database} skipped: {exc}")
            continue
        result.phases += [flow_run.flow, *(s for s in flow_run.steps.values() if s.requests)]
        figures = result.figures[database]
        per_flow = figures["requests_per_flow"]
        reference = bare.rps / (per_flow + CALLS_BETWEEN_SIMS) if per_flow else None
        figures["reference_flows_per_s"] = reference
        figures["vs_reference"] = figures["flows_per_s"] / reference if reference else None
        if database == "postgresql":
            result.checks.append(Check("flows/s on PostgreSQL", figures["flows_per_s"],
                                       TARGET_FLOWS_PER_S, "flows/s"))
        result.checks.append(Check(f"{database}: flows/s vs bare-endpoint bound",
                                   figures["vs_reference"], None, "x"))
    return result
