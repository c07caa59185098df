"""`scanpay certify` against real processes: a local target, and a partner CMS without hooks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness.certify.scenarios import CATALOGUE
from tests.conftest import ADMIN_TOKEN
from tests.e2e.processes import SCANPAY, free_port, gunicorn, running

REPO = Path(__file__).resolve().parents[2]


def certify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCANPAY, "certify", *args], capture_output=True, text=True,
                          timeout=180, cwd=REPO, check=False)


def outcomes(report_dir: Path) -> dict[str, dict[str, str]]:
    report = json.loads((report_dir / "report.json").read_text())
    return {s["id"]: {"outcome": s["outcome"], "reason": s["reason"]}
            for s in report["scenarios"]}


def test_a_local_target_runs_the_whole_catalogue_against_scanpay_serve(tmp_path: Path) -> None:
    trustly_port, cms_port = free_port(), free_port()
    serve = [SCANPAY, "serve", "--trustly-port", str(trustly_port), "--cms-port", str(cms_port),
             "--data-dir", str(tmp_path / "data"), "--controllable-clock",
             "--admin-token", ADMIN_TOKEN]
    with running(serve, f"http://127.0.0.1:{cms_port}/openapi.json", cwd=REPO):
        done = certify("--trustly-url", f"http://127.0.0.1:{trustly_port}",
                       "--cms-url", f"http://127.0.0.1:{cms_port}", "--admin-token",
                       ADMIN_TOKEN, "--report-dir", str(tmp_path / "reports"))
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    found = outcomes(tmp_path / "reports")
    assert set(found) == {s.id for s in CATALOGUE}
    assert {o["outcome"] for o in found.values()} == {"passed"}, found


def test_a_partner_cms_without_hooks_is_incomplete_not_passed_and_the_console_stays_quiet(
    tmp_path: Path,
) -> None:
    trustly_port = free_port()
    env = {"SCANPAY_CMS_DATABASE_URL": f"sqlite:///{tmp_path / 'cms.db'}",
           "SCANPAY_CMS_TRUSTLY_URL": f"http://127.0.0.1:{trustly_port}"}
    with gunicorn("sim_cms.wsgi:create()", env, threads=8) as cms_url:
        target = tmp_path / "partner.toml"
        target.write_text(f"""
name = "sim_cms, no control API"
[cms]
base_url = "{cms_url}"
egm_ids = ["EGM-001", "EGM-002", "EGM-003", "EGM-004", "EGM-005"]
limits_auth = {{ client_id = "casino-desk", client_secret = "casino-desk-secret" }}
[cms.auth]
kind = "oauth2_client_credentials"
client_id = "tpas-client"
client_secret = "tpas-secret"
[trustly]
host = "127.0.0.1"
port = {trustly_port}
""")
        done = certify("--target", str(target), "--report-dir", str(tmp_path / "reports"))
    # Nothing failed, but what the skipped scenarios check was never tested: INCOMPLETE, 3.
    assert done.returncode == 3, done.stdout[-6000:] + done.stderr[-3000:]
    assert "Verdict: INCOMPLETE (exit code 3)" in done.stdout
    report = json.loads((tmp_path / "reports" / "report.json").read_text())
    assert (report["verdict"], report["exitCode"], report["ok"]) == ("INCOMPLETE", 3, False)
    # The harness's own Trustly served every payment, and logged each request to a file in
    # the report dir, which the reports name, never to the console.
    console = done.stdout + done.stderr
    assert "HTTP/1.1" not in console and "/auth-service/" not in console, console[-3000:]
    log = tmp_path / "reports" / "harness-servers.log"
    assert "POST /auth-service/api/oauth2/qrcode/token HTTP/1.1" in log.read_text()
    assert report["serverLog"] == str(log) and str(log) in done.stdout
    found = outcomes(tmp_path / "reports")
    by_id = {s.id: s for s in CATALOGUE}
    for scenario_id, result in found.items():
        if by_id[scenario_id].needs:
            assert result["outcome"] == "skipped", (scenario_id, result)
            assert "hook" in result["reason"], (scenario_id, result)
        else:
            assert result["outcome"] == "passed", (scenario_id, result)
    skipped = [i for i, r in found.items() if r["outcome"] == "skipped"]
    assert {"EGM-004", "SCAN-004", "LIM-004", "PAY-005"} <= set(skipped)
    assert len(found) - len(skipped) >= 20
