"""The QR Code API (`POST /auth-service/api/oauth2/qrcode/token`) against its references.

Phases, in one run, every server on the same stack (`--serving`) and cores:

1. **bare flask**: `bench.bare_app`, a Flask endpoint that parses the same body and answers a
   token-shaped JSON: Flask, the server and HTTP without sim_trustly.
2. **qr token, journal off**: sim_trustly's production entry point for the stack
   (`sim_trustly.wsgi:create_in_worker` under granian, `create()` with its hooks under
   gunicorn; `bench.sims.TRUSTLY_APP`), configured only by `SCANPAY_TRUSTLY_DATABASE_URL`
   (SQLite in a temporary directory), the demo credential, `{"merchantId": "demo-merchant", "egmId":
   "EGM-001"}`.
3. **qr token, journal on**: the same with `SCANPAY_ADMIN_TOKEN` set, which turns the control
   API and the request journal on, as `scanpay serve --admin-token` does.
4. **wiremock**: WireMock answering a canned reply (skipped with a note without java/npm).

Checks (issue 13): throughput >= 1.0x bare; journal on costs <= 1.3x journal off (server CPU
per request); p99 <= 25 ms at 64 connections (journal off); RSS <= 150 MiB per process.
"""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path

from bench.bare_app import BARE_PATH
from bench.common import scrubbed_env
from bench.loadgen import PhaseStats, build_request
from bench.report import BenchResult, Check
from bench.run import RunOptions, measure
from bench.servers import App, Ready, serve
from bench.sims import TRUSTLY_APP
from bench.wiremock import WireMockUnavailable, wiremock

TOKEN_PATH = "/auth-service/api/oauth2/qrcode/token"
BARE_APP = App("bench.bare_app:create_app")
ADMIN_TOKEN = "bench-admin-token"
BODY = json.dumps({"merchantId": "demo-merchant", "egmId": "EGM-001"}).encode()
HEADERS = {"Authorization": "Basic " + base64.b64encode(b"demo-access-id:demo-access-key")
           .decode(), "Content-Type": "application/json"}
CANNED_REPLY = {"url": "http://127.0.0.1/scan/abcdefghijklmnop",
                "token": "x" * 300, "expiresAt": "2026-11-25T21:10:00.000Z"}
TARGET_VS_BARE = 1.0
TARGET_JOURNAL_COST = 1.3
TARGET_P99_MS = 25.0
TARGET_RSS_MB = 150.0


def _trustly_phase(name: str, extra: dict[str, str], options: RunOptions) -> PhaseStats:
    raw = build_request("POST", TOKEN_PATH, BODY, HEADERS)
    with tempfile.TemporaryDirectory(prefix="bench-trustly-") as tmp:
        env = scrubbed_env({"SCANPAY_TRUSTLY_DATABASE_URL": f"sqlite:///{Path(tmp) / 't.db'}",
                            **extra})
        with serve(name, TRUSTLY_APP, options.serving, env, Ready(raw),
                   options.pinning) as server:
            return measure(server, name, raw, options.connections, options)


def _wiremock_phase(options: RunOptions, result: BenchResult) -> PhaseStats | None:
    raw = build_request("POST", TOKEN_PATH, BODY, HEADERS)
    try:
        with wiremock(TOKEN_PATH, CANNED_REPLY, raw, options.pinning) as server:
            # The JVM compiles hot code late: give it three warm-ups' worth before measuring.
            slow_start = RunOptions(duration_s=options.duration_s, warmup_s=3 * options.warmup_s)
            return measure(server, "wiremock canned reply", raw, options.connections, slow_start)
    except WireMockUnavailable as exc:
        result.notes.append(f"WireMock reference skipped: {exc}")
        return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def run(options: RunOptions, with_wiremock: bool = True) -> BenchResult:
    """All phases, the ratios and the checks."""
    result = BenchResult("qr_api", f"QR Code API vs references: {options.serving.describe}, "
                                   f"{options.connections} connections")
    bare_raw = build_request("POST", BARE_PATH, BODY, HEADERS)
    with serve("bare flask", BARE_APP, options.serving, scrubbed_env(), Ready(bare_raw),
               options.pinning) as server:
        bare = measure(server, "bare flask", bare_raw, options.connections, options)
    off = _trustly_phase("qr token, journal off", {}, options)
    on = _trustly_phase("qr token, journal on", {"SCANPAY_ADMIN_TOKEN": ADMIN_TOKEN}, options)
    result.phases += [bare, off, on]
    mock = _wiremock_phase(options, result) if with_wiremock and not options.smoke else None
    if mock is not None:
        result.phases.append(mock)
    elif not with_wiremock or options.smoke:
        result.notes.append("WireMock reference not run (--no-wiremock or --smoke)")
    for phase in result.phases:
        if phase.errors:
            result.problems.append(f"{phase.name}: non-200 answers {dict(phase.statuses)}")
    journal_cost = _ratio(on.server_cpu_ms(), off.server_cpu_ms())
    rss = max([*off.server_rss_mb, *on.server_rss_mb], default=None)
    result.figures = {
        "serving": options.serving.name, "connections": options.connections,
        "rps_vs_bare": _ratio(off.rps, bare.rps),
        "server_cpu_vs_bare": _ratio(off.server_cpu_ms(), bare.server_cpu_ms()),
        "journal_on_cpu_cost": journal_cost,
        "journal_on_rps_vs_off": _ratio(on.rps, off.rps),
        "rps_vs_wiremock": _ratio(off.rps, mock.rps) if mock else None,
        "server_cpu_vs_wiremock": (_ratio(off.server_cpu_ms(), mock.server_cpu_ms())
                                   if mock else None),
        "max_rss_mb": rss,
    }
    result.checks = [
        Check("QR req/s vs bare Flask (journal off)", result.figures["rps_vs_bare"],
              TARGET_VS_BARE, "x"),
        Check("journal on: server CPU/req vs journal off", journal_cost, TARGET_JOURNAL_COST,
              "x", at_least=False),
        Check(f"QR p99 at {options.connections} connections", off.p_ms(99), TARGET_P99_MS,
              "ms", at_least=False),
        Check("RSS per sim_trustly process (max)", rss, TARGET_RSS_MB, "MiB", at_least=False),
    ]
    if mock is not None:
        result.checks.append(Check("QR req/s vs WireMock canned reply",
                                   result.figures["rps_vs_wiremock"], None, "x"))
    return result
