"""`scanpay certify` against real processes: a local target, and a partner CMS without hooks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness.scenarios import CATALOGUE
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


def test_a_partner_cms_without_hooks_passes_what_it_can_and_skips_the_rest(
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
[cms.auth]
kind = "oauth2_client_credentials"
client_id = "tpas-client"
client_secret = "tpas-secret"
[trustly]
host = "127.0.0.1"
port = {trustly_port}
""")
        done = certify("--target", str(target), "--report-dir", str(tmp_path / "reports"))
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
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


def test_an_unreachable_partner_cms_exits_2(tmp_path: Path) -> None:
    target = tmp_path / "gone.toml"
    target.write_text(f"""
[cms]
base_url = "http://127.0.0.1:{free_port()}"
auth = {{ kind = "basic", username = "u", password = "p" }}
egm_ids = ["EGM-001"]
[trustly]
port = {free_port()}
""")
    done = certify("--target", str(target), "--report-dir", str(tmp_path / "reports"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot reach the CMS" in done.stdout + done.stderr
