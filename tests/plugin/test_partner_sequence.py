"""On a partner target, a failing flow test shows the message sequence the plugin could read.

The harness runs its own Trustly, so Trustly's side of a flow is always known; the partner
CMS's side comes from its `journal` hook when it declares one. Without the hook the sequence
still shows Trustly's side, and says what is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.plugin.partner_cms import serve_partner_cms

pytest_plugins = ["pytester"]
ADMIN_TOKEN = "partner-admin-token"
FLOW_TEST = """
def test_pay(scanpay_flow):
    run = scanpay_flow.run(amount=1500)
    assert run.credited, run.reason
    assert False, "fail on purpose: the report shows the flow"
"""


def _flow_document(report_dir: Path) -> dict[str, Any]:
    (written,) = report_dir.glob("*.json")
    document: dict[str, Any] = json.loads(written.read_text())
    return document


def _run(pytester: pytest.Pytester, tmp_path: Path, hooks: tuple[str, ...]
         ) -> tuple[pytest.RunResult, dict[str, Any]]:
    pytester.makepyfile(test_flow=FLOW_TEST)
    report_dir = tmp_path / "flows"
    with serve_partner_cms(tmp_path, admin_token=ADMIN_TOKEN) as cms:
        target = pytester.makefile(".toml", partner_target=cms.target_toml(hooks=hooks))
        result = pytester.runpytest("-p", "no:cacheprovider", "--scanpay-target", str(target),
                                    "--scanpay-report-dir", str(report_dir))
    result.assert_outcomes(failed=1)
    return result, _flow_document(report_dir)


def test_a_partner_with_the_journal_hook_gets_the_whole_sequence(
    pytester: pytest.Pytester, tmp_path: Path,
) -> None:
    result, flow = _run(pytester, tmp_path, hooks=("journal",))
    parties = {(message["from"], message["to"]) for message in flow["sequence"]}
    assert {("EGM", "CMS"), ("CMS", "Trustly"), ("Phone", "Trustly"),
            ("TPAS", "CMS")} <= parties, parties
    funding = [m for m in flow["sequence"]
               if (m["from"], m["to"]) == ("TPAS", "CMS") and m["method"] == "POST"]
    assert funding and all(m["correlationId"] == flow["correlationId"] for m in funding)
    assert not flow["sequenceNote"]
    result.stdout.fnmatch_lines(["*Message sequence*", "*TPAS*CMS*POST*fundings*"])


def test_without_the_journal_hook_trustlys_side_is_shown_and_the_gap_named(
    pytester: pytest.Pytester, tmp_path: Path,
) -> None:
    result, flow = _run(pytester, tmp_path, hooks=())
    parties = {(message["from"], message["to"]) for message in flow["sequence"]}
    assert ("Phone", "Trustly") in parties, parties
    assert {message["journal"] for message in flow["sequence"]} == {"trustly"}
    assert "no journal hook" in flow["sequenceNote"]
    result.stdout.fnmatch_lines(["*Message sequence*", "*sequence incomplete*no journal hook*"])
