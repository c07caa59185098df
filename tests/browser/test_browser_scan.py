"""A person's scan-then-pay in a real headless Chromium, against sims running as processes.

The EGM screen is read the way a phone camera reads it (a screenshot's pixels), the
microsite is used on a phone-sized viewport by clicking its real form, and the credit must
reach the EGM screen through its own polling, with no reload.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from harness.browser.flow import (
    BrowserFlow,
    BrowserFlowError,
    BrowserFlowOptions,
    check_screen_reachable,
    run_browser_flow,
)
from tests.browser.conftest import LiveSims
from tests.e2e.processes import SCANPAY, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _cms_meter(sims: LiveSims, egm_id: str) -> int:
    meter: int = sims.admin_get(f"/_sim/egms/{egm_id}")["creditMeter"]
    return meter


def test_scan_from_screenshot_pay_on_phone_and_see_the_meter_rise_without_reload(
    chromium: Chrome, live_sims: LiveSims, tmp_path: Path,
) -> None:
    options = BrowserFlowOptions(egm_id="EGM-004", amount=5000, screenshots=tmp_path)
    flow = BrowserFlow(chromium, live_sims.cms_url, options)

    before = flow.open_egm_screen()
    assert before == _cms_meter(live_sims, "EGM-004")

    url = flow.scan_qr()
    held = live_sims.admin_get("/_sim/egms/EGM-004")["qr"]["url"]
    assert url == held
    assert url.startswith(f"{live_sims.trustly_url}/scan/")

    heading = flow.open_on_phone(url)
    assert "EGM-004" in heading
    assert chromium.execute_script("return [window.innerWidth, window.innerHeight]") == [390, 844]
    assert "$50.00" in chromium.find_element(By.CSS_SELECTOR, "form.pay").text

    flow.approve()
    assert flow.wait_for_receipt() == "CREDITED"
    receipt = chromium.find_element(By.CSS_SELECTOR, "section.result").text
    assert "Credited $50.00 to EGM-004" in receipt

    assert flow.wait_for_meter(before + 5000) == before + 5000
    assert chromium.execute_script("return window.scanpayFlowMark") is True  # never reloaded
    assert _cms_meter(live_sims, "EGM-004") == before + 5000
    shots = sorted(p.name for p in tmp_path.glob("*.png"))
    assert shots == ["02-egm-screen.png", "03-phone-payment-page.png", "04-phone-filled.png",
                     "05-phone-result.png", "06-egm-credited.png"]


def test_an_amount_off_the_buttons_is_typed_and_credited(
    chromium: Chrome, live_sims: LiveSims, tmp_path: Path,
) -> None:
    before = _cms_meter(live_sims, "EGM-005")
    options = BrowserFlowOptions(egm_id="EGM-005", amount=1234, screenshots=tmp_path)
    result = run_browser_flow(chromium, live_sims.cms_url, options)
    assert result.error is None, result.error
    assert result.ok and result.payment_status == "CREDITED"
    assert (result.meter_before, result.meter_after) == (before, before + 1234)
    assert _cms_meter(live_sims, "EGM-005") == before + 1234


def test_a_declined_bank_login_ends_the_flow_without_credit(
    chromium: Chrome, live_sims: LiveSims, tmp_path: Path,
) -> None:
    before = _cms_meter(live_sims, "EGM-006")
    options = BrowserFlowOptions(egm_id="EGM-006", password="NotEnoughFunds",
                                 screenshots=tmp_path)
    result = run_browser_flow(chromium, live_sims.cms_url, options)
    assert not result.ok
    assert result.payment_status == "FAILED_VOIDED"
    assert result.error is not None and result.error.step == "result"
    assert _cms_meter(live_sims, "EGM-006") == before


def test_scanpay_flow_browser_serves_its_own_sims_and_exits_zero(
    browser_paths: object, tmp_path: Path,
) -> None:
    shots = tmp_path / "shots"
    done = subprocess.run(
        [SCANPAY, "flow", "--browser", "--json", "--egm", "EGM-002", "--timeout", "20",
         "--screenshots", str(shots)],
        capture_output=True, text=True, timeout=90, check=False, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True and result["payment"]["status"] == "CREDITED"
    assert result["meter"]["after"] - result["meter"]["before"] == 2000
    assert result["qrUrl"].startswith("http://127.0.0.1:")
    assert all(Path(s["screenshot"]).is_file() for s in result["steps"] if s["screenshot"])
    assert "decoded from the screenshot" in done.stderr


def test_scanpay_flow_browser_without_chromium_says_how_to_install_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [SCANPAY, "flow", "--browser", "--chromium", str(tmp_path / "no-chromium")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2
    assert "install Debian packages chromium chromium-driver" in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr


def test_an_unreachable_cms_is_reported_before_any_browser_starts() -> None:
    with pytest.raises(BrowserFlowError) as caught:
        check_screen_reachable(f"http://127.0.0.1:{free_port()}", "EGM-001", 2)
    assert caught.value.unreachable and "cannot reach" in str(caught.value)
