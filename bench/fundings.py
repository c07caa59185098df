"""Fundings per second on PostgreSQL (`POST /cws/v1/fundings`) against `pgbench -N`.

sim_cms runs under the production serving on a scratch PostgreSQL database; sim_trustly (on
SQLite) is there only so the CMS can acquire one QR per EGM first, because a funding must
name a QR the EGM displayed (`qrTokenId`, else 422 QR_TOKEN_MISMATCH). The OAuth token is
obtained once with tpas-client/tpas-secret. Then `--clients` (8) closed-loop clients post
fundings: distinct transactionIds, amount 1 (minor unit), each client on its own EGMs (so
the clients measure the server, not one EGM's row lock) and cycling over 64 UBAIs of its own
(the default daily limit, 100000 per UBAI, allows 100000 fundings each per gaming day; the
EGMs' credit caps are set out of reach in the CMS's TOML). Every answer must be 201.

The reference, in the same run: `pgbench -N` (simple update: one UPDATE and one INSERT per
transaction) with the same number of clients on its own scratch database, pinned to the load
core. Target: fundings/s >= 0.25x pgbench's TPS. The count and sum of applied fundings in the
CMS's database, and the meters' increase, must equal the 201 answers.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable

from bench.loadgen import build_request
from bench.pg import PostgresUnavailable, pgbench_tps, scratch_database
from bench.report import BenchResult, Check
from bench.run import RunOptions, measure
from bench.sims import acquire_qr, applied_fundings, cms_access_token, meter_total, sims

TARGET_VS_PGBENCH = 0.25
UBAIS_PER_CLIENT = 64
AMOUNT = 1


def _funding_requests(token: str, qr_by_egm: dict[str, str],
                      clients: int) -> Callable[[int, int], bytes]:
    """A request maker for the load generator: a new transactionId on every call."""
    run = uuid.uuid4().hex[:8]
    numbers = itertools.count()
    egms = sorted(qr_by_egm)
    own = {c: [e for i, e in enumerate(egms) if i % clients == c] for c in range(clients)}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def make(client: int, sequence: int) -> bytes:
        n = next(numbers)
        mine = own[client % clients]
        egm = mine[sequence % len(mine)]
        body = {"transactionId": f"bench-{run}-{n}", "egmId": egm, "amount": AMOUNT,
                "currency": "USD", "ubai": f"bench-{run}-{client}-{sequence % UBAIS_PER_CLIENT}",
                "qrTokenId": qr_by_egm[egm]}
        return build_request("POST", "/cws/v1/fundings", json.dumps(body).encode(), headers)

    return make


def run(options: RunOptions) -> BenchResult:
    """The funding phase, the pgbench reference, the reconciliation and the check."""
    result = BenchResult("fundings", f"Fundings on PostgreSQL: sim_cms, {options.serving.describe}"
                                     f", {options.clients} clients")
    try:
        with scratch_database(options.pg_admin_url, "bench_cms") as cms_db, \
             sims(options, None, cms_db, options.clients) as running:
            token = cms_access_token(running.cms)
            qrs = {egm: str(acquire_qr(running.cms, token, egm)["qrTokenId"])
                   for egm in running.egms}
            meters_before = meter_total(running.cms, token)
            requests = _funding_requests(token, qrs, options.clients)
            phase = measure(running.cms, "fundings", requests, options.clients, options,
                            expected=201)
            meters_after = meter_total(running.cms, token)
            applied = applied_fundings(cms_db)
        with scratch_database(options.pg_admin_url, "bench_pgbench") as pg_db:
            tps = pgbench_tps(pg_db, options.clients, options.duration_s, options.pinning)
    except PostgresUnavailable as exc:
        result.notes.append(f"skipped: {exc}")
        return result
    phase.name = "fundings (201)"
    result.phases.append(phase)
    if phase.errors:
        result.problems.append(f"non-201 answers: {dict(phase.statuses)}")
    # The database is new: every applied funding is one of this run's 201s (warm-up included).
    count, credited = applied
    increase = meters_after - meters_before
    if credited != count * AMOUNT or increase != credited or count < phase.statuses[201]:
        result.problems.append(f"reconciliation: applied {applied}, meters +"
                               f"{meters_after - meters_before}, 201s {phase.statuses[201]}")
    result.figures = {
        "fundings_per_s": phase.rps, "pgbench_tps": tps, "clients": options.clients,
        "vs_pgbench": phase.rps / tps if tps else None,
        "server_cpu_ms_per_funding": phase.server_cpu_ms(),
        "applied_fundings": count, "applied_total": credited, "meter_increase": increase,
    }
    result.notes.append(f"pgbench -N, {options.clients} clients: {tps:,.0f} TPS")
    result.checks.append(Check(f"fundings/s vs pgbench -N ({options.clients} clients)",
                               result.figures["vs_pgbench"], TARGET_VS_PGBENCH, "x"))
    return result
