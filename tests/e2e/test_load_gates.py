"""`scanpay load` as a load tester runs it: the casino floor against `scanpay serve --admin-token`
on free ports, the business gates deciding the exit code, the reconciliation printed, CSV and
HTML results written, distributed mode with a master and two workers, and an unreachable
target refused at once."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from simkit.clock import monotonic
from tests.e2e.processes import SCANPAY, free_port, scanpay_serve

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                                 reason="Locust is not installed (pip install -e '.[dev]')")]

ADMIN_TOKEN = "load-test-admin-token"


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with scanpay_serve(tmp_path_factory.mktemp("load-gates-sims"), ADMIN_TOKEN) as urls:
        yield urls


def _load(sims: tuple[str, str], results: Path, *args: str,
          timeout_s: float = 45) -> subprocess.CompletedProcess[str]:
    trustly, cms = sims
    return subprocess.run(
        [SCANPAY, "load", "--trustly-url", trustly, "--cms-url", cms,
         "--results-dir", str(results), *args],
        capture_output=True, text=True, timeout=timeout_s, check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "SCANPAY_ADMIN_TOKEN": ADMIN_TOKEN})


def _said(done: subprocess.CompletedProcess[str]) -> str:
    """The gates' summary (not Locust's tables) and the end of stderr, for a failure report."""
    summary = done.stdout.partition("== scanpay load")[2].partition("result:")
    return f"{summary[0]}result:{summary[2][:40]}\n{done.stderr[-3000:]}"


def test_clean_floor_run_exits_zero_and_prints_the_reconciliation(
        sims: tuple[str, str], tmp_path: Path) -> None:
    done = _load(sims, tmp_path, "--users", "3", "--spawn-rate", "3", "--run-time", "5",
                 "--replay-share", "0.3")
    assert done.returncode == 0, _said(done)
    out = done.stdout
    assert "result: PASS" in out
    assert re.search(r"verdict\s+EXACT", out), out
    credited = re.search(r"Trustly credited (\d+) USD minor units in (\d+) payments", out)
    applied = re.search(r"CMS applied\s+(\d+) USD", out)
    meters = re.search(r"EGM meters\s+(\d+) USD", out)
    assert credited and applied and meters, out
    assert int(credited[2]) >= 2  # the floor really paid
    assert credited[1] == applied[1] == meters[1]
    assert "PASS error share" in out and "PASS p95" in out
    for name in ("load_stats.csv", "load_failures.csv", "load.html"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "req/s" in done.stderr and "\r" not in done.stderr  # the live line, plain off a TTY


def test_replays_after_bank_refusals_are_not_counted_as_double_credits(
        sims: tuple[str, str], tmp_path: Path) -> None:
    """A payment the bank refused hands its QR back, so only a credited QR is replayed (and
    refused); paying a handed-back QR again is a new payment, not a double credit."""
    done = _load(sims, tmp_path, "--users", "3", "--spawn-rate", "3", "--run-time", "5",
                 "--bank-outcomes", "ok:1,NotEnoughFunds:1", "--replay-share", "1")
    assert done.returncode == 0, _said(done)
    assert "result: PASS" in done.stdout
    assert re.search(r"verdict\s+EXACT", done.stdout), done.stdout
    assert "FAILED_VOIDED" in done.stdout  # the bank really refused some


def test_a_gate_no_run_can_meet_fails_the_run(sims: tuple[str, str], tmp_path: Path) -> None:
    done = _load(sims, tmp_path, "--users", "2", "--spawn-rate", "2", "--run-time", "3",
                 "--max-p95-ms", "0.001")
    assert done.returncode == 1, _said(done)
    assert re.search(r"FAIL p95 [\d.]+ ms > 0.001 ms", done.stdout), done.stdout
    assert "result: FAIL" in done.stdout
    assert re.search(r"verdict\s+EXACT", done.stdout)  # the money was right all the same


def test_two_workers_run_users_and_the_master_judges(
        sims: tuple[str, str], tmp_path: Path) -> None:
    done = _load(sims, tmp_path, "--users", "4", "--spawn-rate", "4", "--run-time", "5",
                 "--workers", "2")
    assert done.returncode == 0, _said(done)
    players = dict(re.findall(r"worker (\d): (\d+) players", done.stdout))
    assert set(players) == {"0", "1"}, done.stdout
    assert all(int(n) >= 1 for n in players.values()), players
    assert "result: PASS" in done.stdout and re.search(r"verdict\s+EXACT", done.stdout)
    for n in (0, 1):  # the workers ran users but judged nothing
        log = (tmp_path / f"worker-{n}.log").read_text()
        assert "result:" not in log and "reconciliation" not in log, log[-2000:]


def test_an_unreachable_target_fails_fast_with_one_message(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    started = monotonic()
    done = subprocess.run(
        [SCANPAY, "load", "--trustly-url", nobody, "--cms-url", nobody, "--run-time", "30",
         "--results-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2, _said(done)
    assert monotonic() - started < 15
    assert f"cannot reach Trustly at {nobody}: connection refused" in done.stderr
    assert "HTTP 0" not in done.stdout + done.stderr and done.stdout == ""
