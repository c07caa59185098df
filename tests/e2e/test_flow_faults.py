"""A fault injected during a flow is visible: in the CMS's journal, in `scanpay flow`'s
sequence, and in the certification reports.

The fault is declared through the CMS's control API (`POST /_sim/faults`), as a tester would:
the next `POST /cws/v1/fundings` is applied, then its connection dropped. The CMS journals
the app's `201 APPLIED`; TPAS never heard it. Every view must say "response dropped by
fault", never show that exchange as a normal 201.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from harness.certify.results import RunResult
from harness.embedded import EmbeddedSims, embedded_sims
from harness.flow import FlowTarget, render_result, run_flow
from tests.e2e.processes import SCANPAY, free_port, running

REPO = Path(__file__).resolve().parents[2]
FUNDINGS = "/cws/v1/fundings"
APPLY_THEN_DROP = {"method": "POST", "path": FUNDINGS, "action": "apply_then_drop", "times": 1}
DROPPED = re.compile(r"201 APPLIED, response dropped by fault \(apply_then_drop, rule \d+\): "
                     r"the caller saw no answer")
PLAIN_APPLIED = re.compile(r"POST /cws/v1/fundings +201 APPLIED +\d+ ms$", re.M)


@pytest.fixture()
def sims() -> Iterator[EmbeddedSims]:
    with embedded_sims() as pair:
        yield pair


def control(sims: EmbeddedSims) -> httpx.Client:
    return httpx.Client(transport=sims.cms_transport, base_url=sims.cms_url,
                        headers={"Authorization": f"Bearer {sims.admin_token}"})


def funding_posts(journal: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in journal if entry["method"] == "POST" and entry["path"] == FUNDINGS]


def test_a_dropped_funding_is_journaled_and_shown_as_dropped_in_the_flow(
        sims: EmbeddedSims) -> None:
    with control(sims) as cms:
        declared = cms.post("/_sim/faults", json=APPLY_THEN_DROP)
        assert declared.status_code == 201, declared.text
        rule_id = declared.json()["faults"][0]["id"]
        result = run_flow(FlowTarget.in_process(sims))
        journal = cms.get("/_sim/journal", params={"path": FUNDINGS}).json()["entries"]
    assert result.credited, result.payment  # TPAS asked again and the credit stands, once
    assert result.meter_after is not None and result.meter_before is not None
    assert result.meter_after - result.meter_before == 2000

    # (a) The journal entry keeps the app's answer and names the fault that withheld it.
    posts = funding_posts(journal)
    assert [(e["status"], e["fault"]) for e in posts] == [
        (201, f"apply_then_drop (rule {rule_id})")]
    assert json.loads(posts[0]["responseBody"])["status"] == "APPLIED"

    # (b) The flow's sequence says so, in its text, its JSON, and what `scanpay flow` prints.
    line = next(m for m in result.sequence if m.entry.path == FUNDINGS and m.entry.method == "POST")
    assert line.to_json()["fault"] == f"apply_then_drop (rule {rule_id})"
    assert DROPPED.search(line.text()), line.text()
    out = io.StringIO()
    render_result(Console(file=out, width=300, color_system=None), result)
    printed = out.getvalue()
    assert DROPPED.search(printed), printed
    assert not PLAIN_APPLIED.search(printed), printed
    assert json.dumps(result.to_json()).count("apply_then_drop") >= 1


@pytest.mark.slow
def test_scanpay_flow_prints_the_dropped_answer_over_real_sockets(tmp_path: Path) -> None:
    trustly_port, cms_port = free_port(), free_port()
    trustly, cms = f"http://127.0.0.1:{trustly_port}", f"http://127.0.0.1:{cms_port}"
    serve = [SCANPAY, "serve", "--trustly-port", str(trustly_port), "--cms-port", str(cms_port),
             "--data-dir", str(tmp_path), "--admin-token", "fault-flow-admin"]
    with running(serve, f"{cms}/openapi.json"):
        declared = httpx.post(f"{cms}/_sim/faults", json=APPLY_THEN_DROP,
                              headers={"Authorization": "Bearer fault-flow-admin"})
        assert declared.status_code == 201, declared.text
        done = subprocess.run(
            [SCANPAY, "flow", "--trustly-url", trustly, "--cms-url", cms, "--admin-token",
             "fault-flow-admin", "--amount", "1100"],
            capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert DROPPED.search(done.stdout), done.stdout
    assert not PLAIN_APPLIED.search(done.stdout), done.stdout


def test_certify_reports_mark_the_fault_of_pay_005(tmp_path: Path) -> None:
    done = subprocess.run([SCANPAY, "certify", "--only", "PAY-005", "--report-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    run = RunResult.from_json(json.loads((tmp_path / "report.json").read_text()))
    faulted = [e for e in run.scenarios[0].sequence if e.fault]
    assert [(e.method, e.path, e.status) for e in faulted] == [("POST", FUNDINGS, 201)]
    assert faulted[0].fault is not None and faulted[0].fault.startswith("apply_then_drop")

    html = (tmp_path / "report.html").read_text()
    row = re.search(r'<tr class="seq-row [^"]*\bfaulted\b[^"]*" data-n="(\d+)">(.*?)</tr>',
                    html, re.S)
    assert row is not None, "no sequence row of report.html is marked as faulted"
    assert int(row.group(1)) == faulted[0].n
    shown = " ".join(re.sub(r"<[^>]+>", " ", row.group(2)).split())
    assert "POST /cws/v1/fundings" in shown
    assert re.search(r"201 APPLIED Fault response dropped by fault \(apply_then_drop, rule \d+\): "
                     r"the caller saw no answer", shown), shown
    assert "status ok unseen" in row.group(2)  # the 201 is struck through: nobody received it

    junit = (tmp_path / "junit.xml").read_text()
    assert DROPPED.search(junit), "junit.xml shows the funding as a normal 201"
