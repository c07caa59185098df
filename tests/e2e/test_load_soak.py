"""The soak's judgement (`python -m loadtests.soak`), without the soak.

The soak itself runs for minutes and is run by hand (loadtests/README.md); these check what
decides its PASS/FAIL: the RSS growth over the last half, the reading of `scanpay load`'s
summary, and that every reason to fail is one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from soak import (
    LoadOutcome,
    RssSample,
    RssSampler,
    problems,
    read_load_outcome,
    rss_growth,
)

from bench.servers import Server
from simkit.wait import poll_until

SUMMARY = """\
== scanpay load: run L1f2e3d4c ==
workers
  worker 0: 2 players, 1 ops, payments: 14 CREDITED, 2 FAILED_VOIDED; replays refused 0
reconciliation
  payments        16 on 2 EGMs (14 CREDITED, 2 FAILED_VOIDED)
  Trustly credited 1400 USD minor units in 14 payments
  CMS applied     1400 USD minor units in 14 fundings
  EGM meters      1400 USD minor units
  verdict         EXACT
gates
  PASS error share 0.00% (0 of 178) <= 1.00%
  PASS p95 9 ms <= 5000 ms  Phone->Trustly GET /api/v1/scan/[code]
result: PASS
"""


def _samples(sim: str, by_time: dict[float, tuple[float, float]]) -> list[RssSample]:
    """A master and a worker per round: (master MiB, worker MiB) by elapsed s."""
    out = []
    for t, (master, worker) in by_time.items():
        out += [RssSample(t, sim, 1, "master", master), RssSample(t, sim, 2, "worker", worker)]
    return out


def _clean(**changes: object) -> LoadOutcome:
    values: dict[str, object] = {"exit_code": 0, "requests": 178, "failures": 0,
                                 "reconciliation": ("verdict         EXACT",),
                                 "result_line": "result: PASS"}
    values.update(changes)
    return LoadOutcome(**values)  # type: ignore[arg-type]


def test_growth_is_measured_from_half_time_to_the_end_over_all_processes() -> None:
    samples = _samples("sim_trustly", {0.0: (30, 50), 30.0: (30, 70), 40.0: (30, 90),
                                       60.0: (30, 80), 70.0: (30, 200)})
    growth = rss_growth(samples, run_s=60)["sim_trustly"]
    # 0 s is warm-up and 70 s is after the run time (the gates settling): neither counts
    assert (growth.half_s, growth.half_mib, growth.end_s, growth.end_mib) == (30, 100, 60, 110)
    assert growth.pct == pytest.approx(10.0)


def test_a_clean_run_with_flat_memory_passes() -> None:
    samples = (_samples("sim_trustly", {300.0: (30, 100), 600.0: (30, 105)})
               + _samples("sim_cms", {300.0: (30, 100), 600.0: (30, 90)}))
    assert problems(_clean(), rss_growth(samples, run_s=600)) == []


@pytest.mark.parametrize(("outcome", "reason"), [
    (_clean(exit_code=1, result_line="result: FAIL (1 gate(s) failed)"), "exit code 1"),
    (_clean(failures=2), "2 failed request(s) of 178"),
    (_clean(failures=None, requests=None), "no request count"),
    (_clean(reconciliation=("verdict         MISMATCH",)), "reconciliation MISMATCH"),
    (_clean(reconciliation=()), "reconciliation missing"),
])
def test_every_load_problem_fails_the_soak(outcome: LoadOutcome, reason: str) -> None:
    samples = (_samples("sim_trustly", {30.0: (30, 100), 60.0: (30, 100)})
               + _samples("sim_cms", {30.0: (30, 100), 60.0: (30, 100)}))
    found = problems(outcome, rss_growth(samples, run_s=60))
    assert len(found) == 1
    assert reason in found[0]


def test_ten_percent_growth_or_a_missing_sim_fails() -> None:
    samples = _samples("sim_trustly", {30.0: (30, 70), 60.0: (30, 80)})  # 100 -> 110 MiB
    found = problems(_clean(), rss_growth(samples, run_s=60))
    assert found == ["sim_trustly RSS grew 10.0% over the last half (limit 10%)",
                     "no RSS samples of sim_cms"]


def test_the_summary_is_read_from_the_gates_output(tmp_path: Path) -> None:
    outcome = read_load_outcome(0, "Locust's table\n" + SUMMARY, tmp_path)
    assert (outcome.requests, outcome.failures) == (178, 0)
    assert outcome.reconciliation_verdict == "EXACT"
    assert outcome.reconciliation[0].startswith("payments        16 on 2 EGMs")
    assert outcome.result_line == "result: PASS"


def test_without_a_summary_the_counts_come_from_locusts_csv(tmp_path: Path) -> None:
    (tmp_path / "load_stats.csv").write_text(
        "Type,Name,Request Count,Failure Count\nGET,x,5,1\n,Aggregated,5,1\n")
    outcome = read_load_outcome(1, "Traceback ...\n", tmp_path)
    assert (outcome.requests, outcome.failures) == (5, 1)
    assert outcome.reconciliation_verdict is None
    assert outcome.result_line is None


def test_the_sampler_reads_a_process_tree_from_proc_into_the_csv(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        sampler = RssSampler([Server("me", 0, os.getpid())], run_s=0, csv_path=tmp_path / "r.csv")
        sampler.start()
        poll_until(lambda: any(s.pid == child.pid for s in sampler.samples) or None,
                   timeout_s=10, interval_s=0.05)
        sampler.stopped.set()
        sampler.join(timeout=5)
    finally:
        child.kill()
        child.wait()
    roles = {s.pid: s.role for s in sampler.samples}
    assert roles[os.getpid()] == "master"
    assert roles[child.pid] == "worker"
    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert rows[0] == "elapsed_s,sim,pid,role,rss_mib"
    assert any(row.startswith(f"0.0,me,{child.pid},worker,") for row in rows[1:])
