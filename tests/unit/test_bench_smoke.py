"""The benchmarks still run end to end: `python -m bench --smoke` must produce real figures.

It runs the one command `make bench` runs, with tiny counts (a fraction of a second per
phase) and its results in a temporary directory, so the benchmarks cannot rot unnoticed
between the times someone runs them in full. PostgreSQL parts are skipped by the command
itself (with a note) where no server answers; the figures' size is not judged here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_every_benchmark_runs_and_writes_its_results(tmp_path: Path) -> None:
    # A session of its own, so that on a timeout the servers the bench started go with it.
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench", "--smoke", "--no-wiremock", "--flow-db", "postgresql",
         "--results-dir", str(tmp_path)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(bench.pid, signal.SIGKILL)
        bench.communicate()
        raise
    assert bench.returncode == 0, stdout[-3000:] + stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ok"] is True
    assert summary["run"]["smoke"] is True
    qr = json.loads((tmp_path / "qr_api.json").read_text())
    names = [p["target"] for p in qr["phases"]]
    assert names == ["bare flask", "qr token, journal off", "qr token, journal on"]
    for phase in qr["phases"]:
        assert phase["requests"] > 0 and phase["errors"] == 0, phase
        assert phase["rps"] > 0 and phase["p99_ms"] >= phase["p50_ms"] > 0, phase
    assert {c["name"] for c in qr["checks"]} >= {"QR p99 at 4 connections"}
    for name in ("fundings", "flows"):
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["ok"] is True, result["problems"]
        if not result["notes"] or "skipped" not in " ".join(result["notes"]):
            assert result["checks"], name
    flows = json.loads((tmp_path / "flows.json").read_text())
    for database, figures in flows["figures"].items():
        assert figures["flows"] > 0, database
        assert figures["reconciled"] is True, figures["reconciliation"]
