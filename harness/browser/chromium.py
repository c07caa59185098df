"""A real, headless Chromium for the harness: start it, give it a phone, read QR codes it shows.

The browser and its driver come from the machine (Debian's `chromium` and `chromium-driver`),
never from the network: both paths are handed to Selenium explicitly, which is what keeps
Selenium Manager (its downloader) from running at all. When either is missing the caller
gets `BrowserUnavailable` with the one line that fixes it, not a Selenium traceback.

QR codes are read the way a phone camera does: from the pixels of a screenshot (zxing-cpp),
not from the page's markup, so a test of "the screen shows a scannable QR" means what it says.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver import Chrome, ChromeOptions
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = "install Debian packages chromium chromium-driver " \
               "(apt-get install -y chromium chromium-driver)"

# Chromium as root in a container: no sandbox (it refuses to start as root with one), and
# /tmp instead of a small /dev/shm. `--headless=new` is the real browser, only without a
# display, so pages render and lay out exactly as they would on screen.
CHROMIUM_ARGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--mute-audio", "--hide-scrollbars")

# What a phone looks like to a page: an iPhone 13/14-sized CSS viewport at 2x, with touch.
PHONE_WIDTH, PHONE_HEIGHT, PHONE_SCALE = 390, 844, 2
PHONE_USER_AGENT = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
                    "(KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36 scanpay-flow")
POLL_S = 0.1

class BrowserUnavailable(Exception):
    """Chromium or chromedriver is not installed where we look, or would not start."""


@dataclass(frozen=True)
class BrowserPaths:
    """Where the browser and its driver are; Debian's locations unless told otherwise."""

    chromium: Path = CHROMIUM
    chromedriver: Path = CHROMEDRIVER

    def missing(self) -> list[str]:
        """The paths that are not executable files (empty when both are usable)."""
        return [str(path) for path in (self.chromium, self.chromedriver)
                if not (path.is_file() and os.access(path, os.X_OK))]

    def check(self) -> None:
        """Raise `BrowserUnavailable` naming what is missing and how to install it."""
        missing = self.missing()
        if missing:
            raise BrowserUnavailable(f"no {' and no '.join(missing)}: {INSTALL_HINT}")


def chromium_options(paths: BrowserPaths, width: int, height: int) -> ChromeOptions:
    """Headless Chromium options at the given window size, with the binary pinned."""
    options = ChromeOptions()
    options.binary_location = str(paths.chromium)
    for arg in (*CHROMIUM_ARGS, f"--window-size={width},{height}"):
        options.add_argument(arg)
    return options


def start_chromium(paths: BrowserPaths | None = None, *, width: int = 640,
                   height: int = 1000) -> Chrome:
    """A headless Chromium driven through the local chromedriver; the caller quits it.

    Raises `BrowserUnavailable` when either binary is missing or the browser will not start.
    """
    paths = paths or BrowserPaths()
    paths.check()
    service = Service(executable_path=str(paths.chromedriver))
    try:
        return Chrome(service=service, options=chromium_options(paths, width, height))
    except WebDriverException as exc:
        raise BrowserUnavailable(f"Chromium would not start ({exc.msg or exc}); "
                                 f"{INSTALL_HINT}") from exc


@contextmanager
def chromium(paths: BrowserPaths | None = None, *, width: int = 640,
             height: int = 1000) -> Iterator[Chrome]:
    """`start_chromium` for the length of a block, quit afterwards whatever happened."""
    driver = start_chromium(paths, width=width, height=height)
    try:
        yield driver
    finally:
        driver.quit()


def as_phone(driver: Chrome, width: int = PHONE_WIDTH, height: int = PHONE_HEIGHT) -> None:
    """Make the current window a phone: its viewport, pixel ratio, touch and user agent.

    DevTools emulation rather than a window size, so the CSS viewport is exactly
    `width` x `height` (a headless window's size includes browser chrome) and the page sees
    a mobile device, as a player's phone that opened the QR would.
    """
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": PHONE_SCALE, "mobile": True})
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True})
    driver.execute_cdp_cmd("Emulation.setUserAgentOverride", {"userAgent": PHONE_USER_AGENT})


def open_window(driver: Chrome) -> str:
    """Open a new top-level window, switch to it, and return its handle."""
    driver.switch_to.new_window("window")
    return str(driver.current_window_handle)


def decode_qr(png: bytes) -> list[str]:
    """The texts of every QR code zxing-cpp finds in a PNG (e.g. a screenshot)."""
    import zxingcpp  # a native extension: imported where needed, not with the harness

    image = Image.open(io.BytesIO(png)).convert("RGB")
    return [result.text for result in zxingcpp.read_barcodes(image)
            if result.format == zxingcpp.BarcodeFormat.QRCode]


def wait_until(driver: Chrome, condition: Callable[[Chrome], Any], timeout_s: float,
               what: str) -> Any:
    """Poll `condition` on the page until it returns something truthy, at most `timeout_s`.

    Raises `TimeoutError` saying `what` was awaited, so a failure reads as the step it was.
    """
    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=POLL_S).until(condition)
    except TimeoutException as exc:
        raise TimeoutError(f"{what}: not within {timeout_s:g}s") from exc


def save_screenshot(driver: Chrome, path: Path) -> bytes:
    """Screenshot the current window's viewport into `path` (PNG) and return the bytes."""
    png: bytes = driver.get_screenshot_as_png()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return png
