"""`scanpay certify` on the embedded target, run as the real command (a subprocess)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from harness.certify.results import RunResult
from harness.certify.scenarios import CATALOGUE
from tests.e2e.processes import SCANPAY

REPO = Path(__file__).resolve().parents[2]
SECRETS = ("demo-access-key", "tpas-secret", "casino-desk-secret")


def certify(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCANPAY, "certify", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False)


def test_the_whole_catalogue_passes_on_the_embedded_sims(tmp_path: Path) -> None:
    done = certify("--report-dir", str(tmp_path))
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    for name in ("report.json", "junit.xml", "report.html"):
        assert (tmp_path / name).is_file(), name
    run = RunResult.from_json(json.loads((tmp_path / "report.json").read_text()))
    assert [s.id for s in run.scenarios] == [s.id for s in CATALOGUE]
    assert {s.outcome for s in run.scenarios} == {"passed"}, [
        (s.id, s.reason) for s in run.scenarios if s.outcome != "passed"]
    wall = re.search(r"Wall time: ([\d.]+) s", out)
    assert wall is not None, out
    assert float(wall.group(1)) < 15, out  # the preflight included
    # QR-002 uses a QR token an hour past its expiry: the run moved the clock at least that.
    assert run.clock_moved_s is not None and run.clock_moved_s > 3600
    assert f"moved the CMS's clock {run.clock_moved_s:,.0f} s" in out
    html = (tmp_path / "report.html").read_text()
    assert f"clock {run.clock_moved_s:,.0f} s" in html.partition('id="clock-moved"')[2]
    pay = next(s for s in run.scenarios if s.id == "PAY-001")
    assert pay.checks and all(c.passed for c in pay.checks)
    parties = {(e.sender, e.receiver) for e in pay.sequence}
    assert {("EGM", "CMS"), ("CMS", "Trustly"), ("Phone", "Trustly"),
            ("TPAS", "CMS")} <= parties, parties
    for name in ("report.json", "report.html", "junit.xml"):
        text = (tmp_path / name).read_text()
        assert not any(secret in text for secret in SECRETS), name


def test_only_runs_the_named_scenarios(tmp_path: Path) -> None:
    done = certify("--report-dir", str(tmp_path), "--only", "FUND-001,lim-002")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert [s["id"] for s in report["scenarios"]] == ["FUND-001", "LIM-002"]


def test_usage_and_target_errors_exit_2_with_a_message(tmp_path: Path) -> None:
    unknown = certify("--report-dir", str(tmp_path), "--only", "NOPE-001")
    assert unknown.returncode == 2 and "NOPE-001" in unknown.stdout + unknown.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[cms]\nbase_url = 'http://127.0.0.1:9'\n")
    refused = certify("--target", str(bad), "--report-dir", str(tmp_path))
    assert refused.returncode == 2 and "bad.toml" in refused.stdout + refused.stderr
    assert not (tmp_path / "report.json").exists()


def test_list_prints_the_catalogue() -> None:
    done = subprocess.run([SCANPAY, "certify", "--list"], capture_output=True, text=True,
                          timeout=60, cwd=REPO, check=False)
    assert done.returncode == 0
    assert all(item.id in done.stdout for item in CATALOGUE)
