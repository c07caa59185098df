"""`scanpay serve` as a user runs it: a real process, real HTTP, the demo credentials."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import httpx
import pytest
import zxingcpp
from PIL import Image

from simkit import qr
from tests.e2e.processes import SCANPAY, free_port, running

pytestmark = pytest.mark.slow


def test_serve_issues_tokens_with_the_demo_credentials(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = [SCANPAY, "serve", "--trustly-port", str(port), "--data-dir", str(tmp_path)]
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
    _, err = process.communicate()
    assert base in err and "demo-access-key" in err  # the banner names URL and credentials


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
