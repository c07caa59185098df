"""Fixtures of the browser tests: a headless Chromium, and both sims as real processes.

The browser is Debian's `chromium` driven through Debian's `chromium-driver`; nothing is ever
downloaded. Without them the tests that need a browser are skipped with the one line that
installs them, except where `SCANPAY_REQUIRE_BROWSER=1` (as `.ci/run` sets): there a missing
browser fails the run, so CI cannot go green by skipping.

Other browser tests use `chromium` (a fresh headless Chromium per test, quit afterwards)
and, for pages served by the sims, `live_sims` (one `scanpay serve` per session).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from tests.e2e.processes import SCANPAY, free_port, running

REQUIRE_ENV = "SCANPAY_REQUIRE_BROWSER"
SKIP_REASON = ("browser tests need Debian chromium and chromium-driver: "
               "apt-get install chromium chromium-driver; .ci/run installs them")

try:
    from selenium.webdriver import Chrome
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    from harness.browser.chromium import CHROMEDRIVER, CHROMIUM, BrowserPaths, start_chromium
except ImportError as exc:  # selenium is in the dev extra; say so rather than erroring
    SELENIUM_ERROR: str | None = f"{exc}; pip install -e '.[dev]'"
else:
    SELENIUM_ERROR = None


def pytest_configure(config: pytest.Config) -> None:
    """Register the `browser` marker (`pytest -m browser` runs only these)."""
    config.addinivalue_line("markers", "browser: drives a real headless Chromium")


def no_browser(why: str) -> NoReturn:
    """Skip, or fail when the environment requires the browser tests to run."""
    message = f"{SKIP_REASON} ({why})"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message}, and {REQUIRE_ENV}=1 forbids skipping", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser_paths() -> BrowserPaths:
    """Debian's chromium and chromedriver (or SCANPAY_CHROMIUM / SCANPAY_CHROMEDRIVER, as
    `scanpay flow --browser` reads them), or a skip saying how to install them."""
    if SELENIUM_ERROR is not None:
        no_browser(f"selenium is not importable: {SELENIUM_ERROR}")
    paths = BrowserPaths(Path(os.environ.get("SCANPAY_CHROMIUM", CHROMIUM)),
                         Path(os.environ.get("SCANPAY_CHROMEDRIVER", CHROMEDRIVER)))
    missing = paths.missing()
    if missing:
        no_browser(f"missing {', '.join(missing)}")
    return paths


@pytest.fixture
def chromium(browser_paths: BrowserPaths, monkeypatch: pytest.MonkeyPatch) -> Iterator[Chrome]:
    """A fresh headless Chromium (640x1000 window), quit after the test.

    Selenium Manager, which would download a browser or driver, is made to fail loudly: the
    explicit binary paths must be enough, and offline mode is set in case it ever runs.
    """
    def refuse(*_: Any, **__: Any) -> NoReturn:
        raise AssertionError("Selenium Manager ran: a browser or driver path was not pinned")

    monkeypatch.setattr(SeleniumManager, "binary_paths", refuse)
    monkeypatch.setenv("SE_OFFLINE", "true")
    driver = start_chromium(browser_paths)
    try:
        yield driver
    finally:
        driver.quit()


@dataclass(frozen=True)
class LiveSims:
    """`scanpay serve` running as a process: its URLs and control-API token."""

    trustly_url: str
    cms_url: str
    admin_token: str

    def admin_get(self, path: str) -> Any:
        """GET a CMS control-API path (`/_sim/...`) and return its JSON."""
        response = httpx.get(f"{self.cms_url}{path}", timeout=10,
                             headers={"Authorization": f"Bearer {self.admin_token}"})
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="session")
def live_sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSims]:
    """Both sims as one real `scanpay serve` process on free 127.0.0.1 ports, per session.

    Tests share it, so each funds its own EGM and reads meters as before/after differences.
    """
    data_dir: Path = tmp_path_factory.mktemp("browser-sims")
    trustly_port, cms_port = free_port(), free_port()
    token = secrets.token_urlsafe(16)
    args = [SCANPAY, "serve", "--trustly-port", str(trustly_port), "--cms-port", str(cms_port),
            "--data-dir", str(data_dir), "--admin-token", token]
    cms_url = f"http://127.0.0.1:{cms_port}"
    with running(args, f"{cms_url}/openapi.json"):
        yield LiveSims(f"http://127.0.0.1:{trustly_port}", cms_url, token)
