"""The EGM screen's QR link in a real headless Chromium: the link beside the image says the url
the QR encodes (read from a screenshot's pixels, as a phone would), follows a new QR without a
reload, and its copy button puts that url on the clipboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from harness.browser.chromium import decode_qr
from tests.browser.conftest import LiveSims

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EGM = "EGM-008"  # no other browser test funds or rotates it
WAIT_S = 15


def _link(driver: Chrome) -> tuple[str, str]:
    link = driver.find_element(By.ID, "qr-url")
    return link.text, str(link.get_attribute("href"))


def _new_qr(sims: LiveSims) -> str:
    """Make the CMS show a new QR on the EGM, as the EGM's own request would (CWS API)."""
    token = httpx.post(f"{sims.cms_url}/cws/v1/oauth/token", auth=("tpas-client", "tpas-secret"),
                       data={"grant_type": "client_credentials"}, timeout=10)
    token.raise_for_status()
    shown = httpx.post(f"{sims.cms_url}/cws/v1/egms/{EGM}/qr", timeout=10,
                       headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    shown.raise_for_status()
    url: str = shown.json()["url"]
    return url


def test_the_screen_shows_its_qr_url_as_a_link_that_follows_rotation_and_copies(
        chromium: Chrome, live_sims: LiveSims, tmp_path: Path) -> None:
    chromium.get(f"{live_sims.cms_url}/egm/{EGM}")
    wait = WebDriverWait(chromium, WAIT_S)
    wait.until(lambda d: d.find_element(By.ID, "copy-url").is_displayed()
               and d.find_element(By.ID, "qr-url").is_displayed())
    chromium.execute_script("window.linkTestMark = true;")  # a reload would drop it

    shot = tmp_path / "egm-screen-with-link.png"
    assert chromium.save_screenshot(str(shot))
    text, href = _link(chromium)
    assert decode_qr(shot.read_bytes()) == [text]  # the link says what the QR encodes
    assert href == text == live_sims.admin_get(f"/_sim/egms/{EGM}")["qr"]["url"]

    rotated = _new_qr(live_sims)
    assert rotated != text
    wait.until(lambda d: _link(d) == (rotated, rotated))
    assert chromium.execute_script("return window.linkTestMark") is True  # never reloaded
    wait.until(lambda d: decode_qr(d.get_screenshot_as_png()) == [rotated])
    chromium.save_screenshot(str(tmp_path / "egm-screen-after-rotation.png"))

    origin = {"origin": live_sims.cms_url, "permissions": ["clipboardReadWrite",
                                                           "clipboardSanitizedWrite"]}
    chromium.execute_cdp_cmd("Browser.grantPermissions", origin)
    chromium.find_element(By.ID, "copy-url").click()
    wait.until(lambda d: d.find_element(By.ID, "copy-url").text == "Copied")
    pasted: Any = chromium.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "navigator.clipboard.readText().then(done, (e) => done('error: ' + e));")
    assert pasted == rotated
