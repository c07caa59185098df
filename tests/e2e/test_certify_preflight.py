"""`scanpay certify`'s preflight, run as the real command: a target that cannot give a
meaningful run exits 2 with one paragraph naming the cause and the fix, runs no scenario,
prints no traceback, and still writes a report that says why (verdict ERROR).
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from werkzeug.serving import make_server

from harness.certify.preflight import PreflightError
from harness.targets import load_target, open_target
from sim_cms.app import create_app as create_cms
from sim_cms.settings import CmsSettings, TrustlyLink
from sim_trustly.app import create_app as create_trustly
from sim_trustly.settings import TrustlySettings
from simkit.clock import system_now
from simkit.db import sqlite_url
from tests.e2e.processes import SCANPAY, free_port
from tests.plugin.partner_cms import serve_partner_cms

REPO = Path(__file__).resolve().parents[2]
ADMIN = "preflight-admin-token"


def certify(target: Path, reports: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCANPAY, "certify", "--target", str(target), "--report-dir",
                           str(reports)], capture_output=True, text=True, timeout=120,
                          cwd=REPO, check=False)


def partner_toml(path: Path, cms_url: str, trustly_port: int) -> Path:
    path.write_text(f"""
name = "Acme CMS"
[cms]
base_url = "{cms_url}"
egm_ids = ["EGM-001", "EGM-002"]
[cms.auth]
kind = "oauth2_client_credentials"
client_id = "tpas-client"
client_secret = "tpas-secret"
[trustly]
host = "127.0.0.1"
port = {trustly_port}
""")
    return path


def assert_not_run(done: subprocess.CompletedProcess[str], reports: Path) -> dict[str, Any]:
    """Exit 2, no traceback, no scenario line; the report holds the diagnosis."""
    console = done.stdout + done.stderr
    assert done.returncode == 2, console
    assert "Traceback" not in console and "Error:" not in done.stderr, console
    assert "SCAN-001" not in console and "PASSED" not in console, console
    assert "Verdict: ERROR (exit code 2): Preflight failed:" in " ".join(done.stdout.split())
    report: dict[str, Any] = json.loads((reports / "report.json").read_text())
    assert (report["verdict"], report["exitCode"], report["scenarios"]) == ("ERROR", 2, [])
    assert report["diagnosis"].startswith("Preflight failed:")
    return report


@contextmanager
def other_trustly(port: int, data_dir: Path) -> Iterator[str]:
    """A sim_trustly that is *not* the harness's, on `port`, for the block."""
    base = f"http://127.0.0.1:{port}"
    app = create_trustly(TrustlySettings(database_url=sqlite_url(str(data_dir / "other.db")),
                                         public_base_url=base))
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="other-trustly")
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()
        app.extensions["sim_trustly"].close()


@pytest.mark.parametrize("egm_paths", ["", '[cms.egm]\nqr_png = "/egm/{egm_id}/qr.png"\n'],
                         ids=["asked-for-a-qr", "qr-image-only"])
def test_a_cms_that_gets_its_qr_from_another_trustly_exits_2_naming_both(
    tmp_path: Path, egm_paths: str,
) -> None:
    harness_port = free_port()
    with serve_partner_cms(tmp_path) as cms, \
            other_trustly(cms.trustly_port, tmp_path) as elsewhere:
        target = partner_toml(tmp_path / "acme.toml", cms.base_url, harness_port)
        target.write_text(target.read_text() + egm_paths)
        done = certify(target, tmp_path / "reports")
    report = assert_not_run(done, tmp_path / "reports")
    ours = f"http://127.0.0.1:{harness_port}"
    said = " ".join(done.stdout.split())
    assert f"your CMS got its QR from {elsewhere}" in said, said
    assert f"Point the CMS's Trustly base URL at {ours}" in said, said
    assert elsewhere in report["diagnosis"] and ours in report["diagnosis"]


def test_a_busy_harness_port_exits_2_with_a_diagnosis_and_no_traceback(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        target = partner_toml(tmp_path / "acme.toml", f"http://127.0.0.1:{free_port()}", busy)
        done = certify(target, tmp_path / "reports")
    report = assert_not_run(done, tmp_path / "reports")
    assert f"port {busy} on 127.0.0.1 is in use by another program" in report["diagnosis"]
    assert "[trustly] port" in " ".join(done.stdout.split())  # markup-looking text survives


def test_an_unreachable_cms_exits_2_with_a_diagnosis_and_no_traceback(tmp_path: Path) -> None:
    gone = f"http://127.0.0.1:{free_port()}"
    target = partner_toml(tmp_path / "gone.toml", gone, free_port())
    done = certify(target, tmp_path / "reports")
    report = assert_not_run(done, tmp_path / "reports")
    assert f"the harness cannot reach the CMS at {gone} (connection refused)" in \
        report["diagnosis"]
    assert "cms.base_url" in report["diagnosis"]
    junit = (tmp_path / "reports" / "junit.xml").read_text()
    assert 'name="preflight"' in junit and "<error" in junit


def _preflight_error(toml: Path) -> str:
    """The diagnosis `open_target` raises for the target file `toml` (in this process)."""
    with pytest.raises(PreflightError) as raised, open_target(load_target(toml)):
        pass
    return str(raised.value)


def test_wrong_credentials_an_unknown_egm_and_a_hook_that_does_not_answer_are_diagnosed(
    tmp_path: Path,
) -> None:
    with serve_partner_cms(tmp_path) as cms:
        good = cms.target_toml()
        wrong_secret = tmp_path / "secret.toml"
        wrong_secret.write_text(good.replace('"tpas-secret"', '"not-the-secret"'))
        said = _preflight_error(wrong_secret)
        assert "the CMS refused the OAuth2 token request" in said, said
        assert "HTTP 401" in said and "cms.auth.client_id and client_secret" in said, said

        unknown_egm = tmp_path / "egm.toml"
        unknown_egm.write_text(good.replace('"EGM-002"]', '"EGM-404"]'))
        said = _preflight_error(unknown_egm)
        assert "GET /cws/v1/egms/EGM-404 on the CMS answered HTTP 404" in said, said
        assert "does not know this EGM (check cms.egm_ids)" in said, said

        no_clock = tmp_path / "clock.toml"  # this CMS serves no control API at all
        no_clock.write_text(good + '\n[control]\nadmin_token = "t"\nhooks = ["clock"]\n')
        said = _preflight_error(no_clock)
        assert f"declares the clock hook, but GET {cms.base_url}/_sim/clock answered " \
               "HTTP 404" in said, said
        assert "remove it from control.hooks" in said, said


@contextmanager
def cms_with_clock(data_dir: Path, trustly_port: int) -> Iterator[str]:
    """sim_cms on a free port with its control API and a controllable clock."""
    settings = CmsSettings(database_url=sqlite_url(str(data_dir / "clock-cms.db")),
                           trustly=TrustlyLink(base_url=f"http://127.0.0.1:{trustly_port}"),
                           admin_token=ADMIN, controllable_clock=True)
    app = create_cms(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True, name="clock-cms").start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        app.extensions["sim_cms"].close()


def test_a_cms_clock_left_a_day_ahead_is_aligned_before_the_qr_is_checked(
    tmp_path: Path,
) -> None:
    """An earlier run leaves the CMS's clock ahead; the preflight must not judge the fresh
    Trustly's QR by it before the clocks are aligned."""
    port = free_port()
    with cms_with_clock(tmp_path, port) as cms_url:
        moved = httpx.post(f"{cms_url}/_sim/clock", json={"advance": 86_400},
                           headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
        assert moved.status_code == 200, moved.text
        toml = partner_toml(tmp_path / "acme.toml", cms_url, port)
        toml.write_text(toml.read_text() +
                        f'\n[control]\nadmin_token = "{ADMIN}"\nhooks = ["clock"]\n')
        with open_target(load_target(toml)) as target:
            assert "QR issued by the harness's Trustly" in target.preflight
            ahead = target.now() - system_now()
            assert ahead.total_seconds() > 86_000  # Trustly now runs on the CMS's day
