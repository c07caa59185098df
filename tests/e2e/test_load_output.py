"""What `scanpay load` prints: Locust's summary tables always (also when `--stats-file` writes
the statistics as JSON), and one message, at once, when a target does not answer."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from simkit.clock import monotonic
from tests.e2e.processes import SCANPAY, free_port, scanpay_serve

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                                 reason="Locust is not installed (pip install -e '.[dev]')")]

# Lines of Locust's summary tables (its stats and its percentiles; the error report is
# printed only when there were errors).
SUMMARY = ("Aggregated", "Response time percentiles (approximated)")


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with scanpay_serve(tmp_path_factory.mktemp("load-output-sims")) as urls:
        yield urls


def _load(trustly: str, cms: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCANPAY, "load", "--trustly-url", trustly, "--cms-url", cms, "--users", "1",
         "--spawn-rate", "1", "--run-time", "2", "--journey", "qr-token",
         "--results-dir", str(tmp_path / "results"), *args],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_the_summary_is_printed_beside_the_stats_file(
        sims: tuple[str, str], tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    done = _load(*sims, tmp_path, "--stats-file", str(stats))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    said = done.stdout + done.stderr
    for header in SUMMARY:
        assert header in said, header
    assert "CMS->Trustly POST /auth-service/api/oauth2/qrcode/token" in said
    assert said.count("Response time percentiles (approximated)") == 1  # not twice
    names = {entry["name"] for entry in json.loads(stats.read_text())}
    assert "CMS->Trustly POST /auth-service/api/oauth2/qrcode/token" in names
    assert "result: PASS" in done.stdout  # the gates' verdict as ever


def test_one_dead_target_of_two_is_one_message_and_nothing_runs(
        sims: tuple[str, str], tmp_path: Path) -> None:
    trustly, _ = sims
    dead = f"http://127.0.0.1:{free_port()}"
    started = monotonic()
    done = _load(trustly, dead, tmp_path)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert monotonic() - started < 15
    assert done.stderr.strip().splitlines()[-1] == (
        f"Error: cannot reach the CMS at {dead}: connection refused. Nothing was run.")
    assert "Trustly" not in done.stderr  # the live one is not blamed
    assert "HTTP 0" not in done.stdout + done.stderr and done.stdout == ""
    assert not (tmp_path / "results").exists()  # Locust never started
