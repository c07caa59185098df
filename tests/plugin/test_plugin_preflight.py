"""The pytest plugin on a partner target that cannot be used, and on one that can: the
preflight's diagnosis instead of tracebacks, and no server log lines on the console."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugin.partner_cms import serve_partner_cms

pytest_plugins = ["pytester"]

TESTS = """
def test_one(scanpay_target):
    assert scanpay_target.kind == "partner"

def test_two(scanpay_flow):
    run = scanpay_flow.run(egm_id="EGM-001", amount=500)
    assert run.credited, run.error
"""


def test_a_busy_harness_port_fails_the_tests_with_the_diagnosis_not_tracebacks(
    pytester: pytest.Pytester, tmp_path: Path,
) -> None:
    pytester.makepyfile(test_partner=TESTS)
    with serve_partner_cms(tmp_path) as cms, socket.socket() as holder:
        holder.bind(("127.0.0.1", cms.trustly_port))
        holder.listen()
        target = pytester.makefile(".toml", partner_target=cms.target_toml())
        result = pytester.runpytest("-p", "no:cacheprovider", "--scanpay-target", str(target))

    result.assert_outcomes(errors=2)
    out = result.stdout.str() + result.stderr.str()
    assert f"port {cms.trustly_port} on 127.0.0.1 is in use by another program" in out
    assert "Traceback" not in out and "SystemExit" not in out, out
    assert len(out.splitlines()) < 60, out


def test_the_harness_servers_log_to_the_report_dir_not_the_console(tmp_path: Path) -> None:
    (tmp_path / "test_partner.py").write_text(TESTS)
    reports = tmp_path / "reports"
    with serve_partner_cms(tmp_path) as cms:
        target = tmp_path / "partner.toml"
        target.write_text(cms.target_toml())
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", "test_partner.py",
             "--scanpay-target", str(target), "--scanpay-report-dir", str(reports)],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "HTTP/1.1" not in out, out  # -s: nothing captured, so nothing may be printed
    assert "POST /auth-service/api/oauth2/qrcode/token" in \
        (reports / "harness-servers.log").read_text()
