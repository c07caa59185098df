"""`scanpay serve` as a user runs it: a real process, real HTTP, the demo credentials."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import zxingcpp
from PIL import Image

from simkit import qr
from simkit.wait import poll_until
from tests.e2e.processes import SCANPAY, free_port, running

pytestmark = pytest.mark.slow


def serve_args(tmp_path: Path) -> tuple[list[str], str, str]:
    """`scanpay serve` on free ports: argv, sim_trustly's URL, sim_cms's URL."""
    trustly_port, cms_port = free_port(), free_port()
    args = [SCANPAY, "serve", "--trustly-port", str(trustly_port), "--cms-port",
            str(cms_port), "--data-dir", str(tmp_path)]
    return args, f"http://127.0.0.1:{trustly_port}", f"http://127.0.0.1:{cms_port}"


def test_serve_issues_tokens_with_the_demo_credentials(tmp_path: Path) -> None:
    args, base, _ = serve_args(tmp_path)
    with running(args, f"{base}/openapi.json") as process:
        response = httpx.post(
            f"{base}/auth-service/api/oauth2/qrcode/token",
            auth=("demo-access-id", "demo-access-key"),
            json={"merchantId": "demo-merchant", "egmId": "EGM-001"},
        )
        assert response.status_code == 200
        body = response.json()
        assert body["url"].startswith(f"{base}/scan/")
        png = Image.open(io.BytesIO(qr.render_png(body["url"])))
        assert [r.text for r in zxingcpp.read_barcodes(png)] == [body["url"]]
        assert (tmp_path / "trustly.db").exists()
        # The banner names the URL and the credentials. It is printed once start-up's last
        # steps (handing an earlier run's payments to the sweep) are done, which on a busy
        # machine can be after the sims already answer: wait for it before Ctrl-C.
        banner = poll_until(
            lambda: process.stderr_so_far() if base in process.stderr_so_far() else None,
            timeout_s=30, interval_s=0.1)
    assert banner is not None and "demo-access-key" in banner, process.communicate()[1]


def _status_with_qr(cms_url: str, egm_id: str) -> dict[str, Any]:
    """The screen's status once it shows a QR (the rotator may be acquiring it right now)."""
    status: dict[str, Any] = {}

    def with_qr() -> dict[str, Any] | None:
        nonlocal status
        status = httpx.get(f"{cms_url}/egm/{egm_id}/status.json").json()
        return status if status.get("url") else None

    shown = poll_until(with_qr, timeout_s=20, interval_s=0.1)  # as the EGM screen polls
    if shown is None:
        raise AssertionError(f"no QR on {egm_id} within 20 s: {status}")
    return shown


def test_egm_screen_shows_a_scannable_qr_from_the_running_trustly(tmp_path: Path) -> None:
    args, trustly_url, cms_url = serve_args(tmp_path)
    with running(args, f"{cms_url}/openapi.json"):
        page = httpx.get(f"{cms_url}/egm/EGM-001")
        assert page.status_code == 200 and "qr.png" in page.text
        status = _status_with_qr(cms_url, "EGM-001")
        png = httpx.get(f"{cms_url}/egm/EGM-001/qr.png")
        assert png.status_code == 200
        decoded = [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))]
        assert decoded == [status["url"]]
        assert status["url"].startswith(f"{trustly_url}/scan/")
        token = httpx.post(f"{cms_url}/cws/v1/oauth/token", auth=("tpas-client", "tpas-secret"),
                           data={"grant_type": "client_credentials"})
        assert token.status_code == 200


def test_serve_refuses_a_weak_signing_key_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "weak.toml"
    config.write_text('[[trustly.signing_keys]]\nkid = "k1"\nsecret = "too-short"\n')
    result = subprocess.run(
        [SCANPAY, "serve", "--trustly-port", str(free_port()), "--data-dir", str(tmp_path),
         "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "32" in result.stderr and "k1" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_explains_the_fixed_flags() -> None:
    result = subprocess.run([SCANPAY, "serve", "--help"], capture_output=True, text=True,
                            timeout=60, check=True)
    for flag in ("--trustly-port", "--cms-port", "--data-dir", "--trustly-db", "--cms-db",
                 "--config", "--controllable-clock", "--admin-token"):
        assert flag in result.stdout


def test_both_sims_of_one_serve_report_the_same_now_after_an_advance_on_either(
    tmp_path: Path,
) -> None:
    args, trustly_url, cms_url = serve_args(tmp_path)
    admin = {"Authorization": "Bearer serve-clock-token"}
    args += ["--controllable-clock", "--admin-token", "serve-clock-token"]

    def now(url: str) -> str:
        response = httpx.get(f"{url}/_sim/clock", headers=admin)
        assert response.status_code == 200, response.text
        return str(response.json()["now"])

    with running(args, f"{trustly_url}/openapi.json"):
        for mover in (cms_url, trustly_url):
            before = now(trustly_url)
            moved = httpx.post(f"{mover}/_sim/clock", json={"advance": 125}, headers=admin)
            assert moved.status_code == 200, moved.text
            assert now(trustly_url) == now(cms_url) != before
