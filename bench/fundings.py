"""Fundings per second on PostgreSQL (`POST /cws/v1/fundings`) against `pgbench -N`.

sim_cms runs under the production serving on a scratch PostgreSQL database; sim_trustly (on
SQLite) is there so the CMS can acquire a QR per EGM through its own API first. A funding must
name a QR token the EGM displayed (`qrTokenId`, else 422 QR_TOKEN_MISMATCH), and a QR token
pays one funding (else 422 QR_TOKEN_USED), so the phase needs one displayed token per
funding: tens of thousands, more than acquiring them through Trustly could make in the time
the phase lasts. They are written straight into the scratch database as displayed tokens (the
rows the CMS's own acquisition writes), before the clock starts. The OAuth token is
obtained once with tpas-client/tpas-secret. Then `--clients` (8) closed-loop clients post
fundings: distinct transactionIds and QR tokens, amount 1 (minor unit), each client on its
own EGMs (so
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
from collections.abc import Callable, Iterator
from datetime import timedelta

import psycopg

from bench.loadgen import build_request
from bench.pg import PostgresUnavailable, pgbench_tps, scratch_database
from bench.report import BenchResult, Check
from bench.run import RunOptions, measure
from bench.sims import acquire_qr, applied_fundings, cms_access_token, meter_total, sims
from simkit.clock import system_now

TARGET_VS_PGBENCH = 0.25
UBAIS_PER_CLIENT = 64
AMOUNT = 1


# Displayed QR tokens written per second of phase (warm-up included): above any rate this
# machine reaches, so the clients never run out.
TOKENS_PER_S = 6000


def show_qr_tokens(cms_db: str, egms: list[str], count: int) -> dict[str, Iterator[str]]:
    """`count` QR tokens displayed on the EGMs (round robin), as rows of the CMS's database;
    Trustly's expiry of each is a day away. Returns an iterator of each EGM's tokens."""
    run = uuid.uuid4().hex[:8]
    now = system_now()  # the sims under test run on the system clock
    later = now + timedelta(days=1)
    tokens = {egm: [f"bench-qr-{run}-{egm}-{n}" for n in range(count // len(egms) + 1)]
              for egm in egms}
    with psycopg.connect(cms_db) as connection, connection.cursor() as cursor, \
            cursor.copy("COPY qr_displays (qr_token_id, egm_id, url, token, expires_at, "
                        "rotates_at, displayed_at) FROM STDIN") as copy:
        for egm, names in tokens.items():
            for name in names:
                copy.write_row((name, egm, f"https://bench/{name}", "jwt", later, later, now))
    return {egm: iter(names) for egm, names in tokens.items()}


def _funding_requests(token: str, qr_tokens: dict[str, Iterator[str]],
                      clients: int) -> Callable[[int, int], bytes]:
    """A request maker for the load generator: a new transactionId and QR token every call."""
    run = uuid.uuid4().hex[:8]
    numbers = itertools.count()
    egms = sorted(qr_tokens)
    own = {c: [e for i, e in enumerate(egms) if i % clients == c] for c in range(clients)}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def make(client: int, sequence: int) -> bytes:
        n = next(numbers)
        mine = own[client % clients]
        egm = mine[sequence % len(mine)]
        body = {"transactionId": f"bench-{run}-{n}", "egmId": egm, "amount": AMOUNT,
                "currency": "USD", "ubai": f"bench-{run}-{client}-{sequence % UBAIS_PER_CLIENT}",
                "qrTokenId": next(qr_tokens[egm])}
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
            for egm in running.egms:  # the CMS's own acquisition works on this floor
                acquire_qr(running.cms, token, egm)
            qr_tokens = show_qr_tokens(cms_db, running.egms, int(
                TOKENS_PER_S * (options.warmup_s + options.duration_s)) + 1000)
            meters_before = meter_total(running.cms, token)
            requests = _funding_requests(token, qr_tokens, options.clients)
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
