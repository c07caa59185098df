"""Every report gives the same honest verdict, and says it is a dry run, not a certification.

PASSED only when every scenario ran and passed; skips without failures are INCOMPLETE (exit
3, never green); a failure or error is FAILED (1); a run that never started is ERROR (2),
with its diagnosis. A failed scenario's reason names its money check before shape checks.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from harness.certify.results import DISCLAIMER, Check, RunResult, ScenarioResult, headline
from harness.report.html import render_html
from harness.report.junit import junit_tree
from harness.report.writers import render_summary, write_reports
from tests.unit.report_samples import sample_run

DIAGNOSIS = ("Preflight failed: your CMS got its QR from http://127.0.0.1:9999; point its "
             "Trustly base URL at http://127.0.0.1:8710.")


def _only(*outcomes: str) -> RunResult:
    run = sample_run()
    run.scenarios = [s for s in run.scenarios if s.outcome in outcomes]
    return run


def _not_run() -> RunResult:
    return RunResult("Acme CMS", "partner", "2025-06-01T10:15:30Z", 0.0, diagnosis=DIAGNOSIS)


def _console(run: RunResult) -> str:
    console = Console(record=True, width=200, color_system=None)
    render_summary(console, run)
    return console.export_text()


@pytest.mark.parametrize(("run", "verdict", "exit_code"), [
    (_only("passed"), "PASSED", 0),
    (_only("passed", "skipped"), "INCOMPLETE", 3),
    (_only("passed", "skipped", "failed"), "FAILED", 1),
    (_only("passed", "error"), "FAILED", 1),
    (_not_run(), "ERROR", 2),
    (RunResult("embedded", "embedded", "2025-06-01T10:15:30Z", 0.0), "INCOMPLETE", 3),
], ids=["passed", "skips", "failed", "error", "not-run", "nothing-ran"])
def test_the_verdict_and_exit_code_of_a_run(run: RunResult, verdict: str,
                                            exit_code: int) -> None:
    assert (run.verdict, run.exit_code, run.ok) == (verdict, exit_code, verdict == "PASSED")


def test_a_run_with_skips_is_incomplete_in_every_report(tmp_path: Path) -> None:
    run = _only("passed", "skipped")
    paths = write_reports(run, tmp_path)

    out = _console(run)
    assert "2 scenarios: 1 passed, 0 failed, 1 skipped, 0 error in 2.50 s  INCOMPLETE" in out
    assert "Verdict: INCOMPLETE (exit code 3): nothing failed, but 1 scenario(s) were " \
           "skipped" in out
    assert "PASSED" not in out.replace("│ PASSED", "")  # only the passed scenario's row
    assert "Verdict: INCOMPLETE (exit code 3)" in paths.text.read_text()

    report = json.loads(paths.json.read_text())
    assert (report["verdict"], report["exitCode"], report["ok"]) == ("INCOMPLETE", 3, False)

    suite = ET.parse(paths.junit).getroot().find("testsuite")
    assert suite is not None
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert (properties["verdict"], properties["exitCode"]) == ("INCOMPLETE", "3")
    assert len(suite.findall("testcase/skipped")) == 1  # a skip stays a skip

    page = paths.html.read_text()
    assert '<div class="verdict incomplete" id="verdict">Incomplete</div>' in page
    assert 'class="verdict ok"' not in page
    assert 'class="banner v-INCOMPLETE"' in page


@pytest.mark.parametrize("run", [sample_run(), _only("passed"), _not_run()],
                         ids=["failed", "passed", "not-run"])
def test_every_report_says_it_is_a_dry_run_not_a_trustly_certification(
        run: RunResult, tmp_path: Path) -> None:
    assert "not a Trustly certification" in DISCLAIMER
    paths = write_reports(run, tmp_path)
    assert DISCLAIMER in " ".join(_console(run).split())
    assert DISCLAIMER in " ".join(paths.text.read_text().split())
    assert json.loads(paths.json.read_text())["disclaimer"] == DISCLAIMER
    properties = {p.get("name"): p.get("value")
                  for p in ET.parse(paths.junit).getroot().iter("property")}
    assert properties["disclaimer"] == DISCLAIMER
    assert f'<div class="banner disclaimer" id="disclaimer">{DISCLAIMER}</div>' in \
        paths.html.read_text().replace("&#39;", "'")


def test_a_run_that_never_started_reports_its_diagnosis(tmp_path: Path) -> None:
    run = _not_run()
    run.server_log = str(tmp_path / "harness-servers.log")
    paths = write_reports(run, tmp_path)

    out = " ".join(_console(run).split())
    assert f"Verdict: ERROR (exit code 2): {DIAGNOSIS}" in out
    assert "scenarios:" not in out  # no table, no counts: nothing ran
    assert run.server_log in out

    report = json.loads(paths.json.read_text())
    assert (report["verdict"], report["exitCode"]) == ("ERROR", 2)
    assert report["diagnosis"] == DIAGNOSIS and report["scenarios"] == []
    assert report["serverLog"] == run.server_log
    assert RunResult.from_json(report).to_json() == report

    root = junit_tree(run).getroot()
    (case,) = root.iter("testcase")
    error = case.find("error")
    assert case.get("name") == "preflight" and error is not None
    assert error.get("message") == DIAGNOSIS

    page = render_html(run).replace("&#39;", "'")
    assert '<div class="verdict bad" id="verdict">Not run</div>' in page
    assert DIAGNOSIS in page and run.server_log in page
    assert 'id="counts"' not in page and 'id="filters"' not in page  # nothing ran to count


def _result(checks: list[Check]) -> ScenarioResult:
    return ScenarioResult("FUND-009", "Identical fundings at once", "Exactly once.", ("funding",),
                          "failed", 0.1, reason="", checks=checks)


def test_the_reason_names_the_failed_money_check_before_shape_checks() -> None:
    status = Check("each copy is 201 or a replay", False, "201/replay", "8 x 201")
    meter = Check("the meter went up once", False, "+2000", "+16000", kind="money")
    assert headline([status, meter]) is meter
    assert headline([status]) is status
    assert headline([Check("held", True)]) is None

    run = RunResult("x", "partner", "2025-06-01T10:15:30Z", 0.1,
                    scenarios=[_result([status, meter])])
    failure = junit_tree(run).getroot().find("testsuite/testcase/failure")
    assert failure is not None
    assert failure.get("message") == \
        "the meter went up once: expected +2000, observed +16000"


def test_a_check_keeps_its_kind_through_report_json() -> None:
    meter = Check("the meter went up once", False, "+2000", "+16000", kind="money")
    assert meter.to_json()["kind"] == "money"
    assert Check.from_json(meter.to_json()) == meter
    old = {"description": "d", "passed": True}  # a report written before kinds existed
    assert Check.from_json(old).kind == "protocol"
