"""The scanpay pytest plugin, as a partner's CI uses it: inner pytest runs of partner files.

The example file (examples/partner_ci/test_partner_cms.py) is run as it is shipped: on the
embedded sims from a directory outside this project, and on a partner target (our reference
CMS served over HTTP as a stand-in, no hooks), where the `sim_only` test and the test of a
hook the target does not declare are skipped with their reasons.
Runs that must not see this process's imports are subprocesses; the others run in-process
(`pytester.runpytest`), which saves an interpreter start each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugin.partner_cms import serve_partner_cms

# `pytester` is opt-in; a non-root conftest may not declare plugins, a test module may.
pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "partner_ci" / "test_partner_cms.py"
EXAMPLE_TESTS = 11
SIM_ONLY_REASON = "reads the simulators' own ledger dump"


def _isolated_env() -> dict[str, str]:
    """The environment of a partner's shell: no target chosen, nothing of ours on the path."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SCANPAY_", "PYTEST_", "PYTHONPATH"))}
    return env


def test_example_passes_from_a_separate_directory_with_only_the_installed_package(
    tmp_path: Path,
) -> None:
    """Acceptance: only `pip install` of the project and the example's test file."""
    (tmp_path / EXAMPLE.name).write_text(EXAMPLE.read_text())

    run = subprocess.run([sys.executable, "-m", "pytest", "-rs", EXAMPLE.name],
                         cwd=tmp_path, env=_isolated_env(), capture_output=True, text=True,
                         timeout=120, check=False)

    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{EXAMPLE_TESTS} passed" in run.stdout, run.stdout
    assert f"rootdir: {tmp_path}" in run.stdout  # neither our pyproject nor our conftest


def test_example_on_a_partner_target_skips_sim_only_with_its_reason(
    pytester: pytest.Pytester, tmp_path: Path,
) -> None:
    pytester.makepyfile(test_partner_cms=EXAMPLE.read_text())
    with serve_partner_cms(tmp_path) as cms:
        target = pytester.makefile(".toml", partner_target=cms.target_toml())
        result = pytester.runpytest("-rs", "-p", "no:cacheprovider",
                                               "--scanpay-target", str(target))

    # one test needs the sims, one the egm-state hook this stand-in does not declare
    result.assert_outcomes(passed=EXAMPLE_TESTS - 2, skipped=2)
    result.stdout.fnmatch_lines_random([
        f"SKIPPED*sim_only: {SIM_ONLY_REASON}; the target 'Stand-in partner CMS' is a partner "
        "system", "SKIPPED*the target does not offer the egm-state hook"])


def test_unused_plugin_starts_nothing_and_imports_no_harness(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import sys

        def test_nothing_of_the_harness_is_loaded():
            loaded = [name for name in sys.modules
                      if name.startswith(("harness.", "sim_cms", "sim_trustly"))
                      and name not in ("harness.plugin", "harness.plugin.pytest_plugin")]
            assert loaded == []
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)


def test_a_bad_target_file_stops_the_run_before_any_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_never_runs(scanpay_target): pass")
    target = pytester.makefile(".toml", bad='kind = "partner"\nname = "no cms table"\n')

    result = pytester.runpytest("-p", "no:cacheprovider", "--scanpay-target", str(target))

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--scanpay-target*needs a [[]cms[]] table*"])


def test_failed_flow_test_reports_the_flow_and_writes_it_to_the_report_dir(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("""
        def test_expects_too_much(scanpay_flow):
            run = scanpay_flow.run(amount=1234)
            assert run.meter_after == 0
    """)
    reports = pytester.path / "flows"

    result = pytester.runpytest("-p", "no:cacheprovider", "--scanpay-report-dir", str(reports))

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*- scanpay flows -*", "flow 1: 1234 on EGM-001 as player-*",
                                 "*Message sequence*", "*CREDITED*"])
    written = json.loads(next(reports.glob("*.json")).read_text())
    assert written["credited"] is True
    assert written["meter"]["after"] - written["meter"]["before"] == 1234
    assert written["sequence"], "the embedded sims' journals give the message sequence"


def test_scanpay_trustly_is_the_harness_client_and_keeps_the_raw_clients_calls(
    pytester: pytest.Pytester,
) -> None:
    """A partner asks Trustly for QR tokens as its merchant, the new way and the way the
    fixture's former raw client was used; the merchant's credentials go with both."""
    pytester.makepyfile("""
        from harness.clients.trustly import TrustlyApi

        QR = "/auth-service/api/oauth2/qrcode/token"

        def test_a_token_the_new_way(scanpay_trustly, scanpay_target):
            assert isinstance(scanpay_trustly, TrustlyApi)
            answer = scanpay_trustly.request_qr_token(
                {"merchantId": scanpay_target.merchant.merchant_id,
                 "egmId": scanpay_target.egm_ids[0]})
            assert answer.status_code == 200, answer.text
            assert {"url", "token", "expiresAt"} <= set(answer.json())

        def test_a_token_as_the_raw_client_was_asked(scanpay_trustly, scanpay_target):
            body = {"merchantId": scanpay_target.merchant.merchant_id,
                    "egmId": scanpay_target.egm_ids[0]}
            answer = scanpay_trustly.post(QR, json=body)
            assert answer.status_code == 200, answer.text
            assert scanpay_trustly.get("/openapi.json").status_code == 200

        def test_other_credentials_when_asked_for(scanpay_trustly, scanpay_target):
            body = {"merchantId": scanpay_target.merchant.merchant_id,
                    "egmId": scanpay_target.egm_ids[0]}
            assert scanpay_trustly.post(QR, json=body, auth=("nobody", "x")).status_code == 401
            stranger = scanpay_trustly.request_qr_token(body, auth=("nobody", "x"))
            assert stranger.status_code == 401
            assert scanpay_trustly.request("POST", QR, json=body, auth=None).status_code == 401
    """)

    result = pytester.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(passed=3)
