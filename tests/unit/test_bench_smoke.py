"""The token benchmark still runs end to end: a tiny run must report real, positive figures.

It runs the one command (`python -m bench.token_issue`) exactly as `make bench` does, with very
small counts, so the benchmark cannot rot unnoticed between the times someone runs it in full.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_token_bench_reports_positive_figures_for_both_targets() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.token_issue", "--requests", "50", "--warmup", "5",
         "--concurrency", "2", "--workers", "1", "--json"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    names = [t["target"] for t in report["targets"]]
    assert names == ["bare flask", "qr token"]
    for target in report["targets"]:
        assert target["requests"] == 50
        assert target["errors"] == 0
        for figure in ("rps", "p50_ms", "p99_ms"):
            assert target[figure] > 0, (target["target"], figure)
        assert target["p99_ms"] >= target["p50_ms"]
    assert report["ratio"]["rps"] > 0
    assert report["ratio"]["p50"] > 0
