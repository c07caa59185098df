"""`scanpay flow --browser`: one scan-then-pay done by a real browser, as a player would.

One headless Chromium, two windows. The first is the EGM: it opens the CMS's EGM screen
(`/egm/<id>`) and keeps it open. The harness reads the QR from a screenshot of that window
(the pixels, as a phone camera does), then opens the decoded url in a second window sized
and dressed as a phone, picks the amount, checks the confirmation page shows that amount,
logs in at the demo bank and clicks Approve on the microsite's real forms. Back on the first
window, it waits (bounded) for the screen's own polling to show the new meter; the page is
marked before and checked after, so a reload cannot pass for the live update.

The steps are separate methods of `BrowserFlow` so the browser tests can assert between
them; `run_browser_flow` chains them and turns a failed step into a result, never a raise.
The sims are reached by URL only (`harness.browser.command` serves in-process ones first).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selenium.common.exceptions import WebDriverException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from harness.browser.chromium import as_phone, decode_qr, open_window, save_screenshot, wait_until
from harness.clients.cms import CmsApi
from harness.clients.http import HTTPError
from harness.clients.phone import DEFINITE
from harness.flow import format_money
from simkit.money import MINOR_DIGITS

DEFAULT_SCREENSHOTS = Path("reports/flow-browser")
_MARK = "scanpayFlowMark"  # a property set on the EGM page; a reload would drop it


@dataclass(frozen=True)
class BrowserFlowOptions:
    """What to pay onto which EGM, how long each wait may take, where screenshots go."""

    egm_id: str = "EGM-001"
    amount: int = 2000
    currency: str = "USD"
    username: str = "demo-player"
    password: str = "demo-password"  # noqa: S105 - the demo bank approves any other phrase
    timeout_s: float = 20.0
    screenshots: Path = DEFAULT_SCREENSHOTS

    def __repr__(self) -> str:  # never print the password
        return f"BrowserFlowOptions(egm_id={self.egm_id!r}, amount={self.amount}, ...)"


class BrowserFlowError(Exception):
    """A step of the browser flow failed; `unreachable` when the CMS could not be reached."""

    def __init__(self, step: str, message: str, *, unreachable: bool = False) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.unreachable = unreachable


@dataclass(frozen=True)
class BrowserStep:
    """One thing the browser did, what it saw, and the screenshot it took then."""

    number: int
    title: str
    detail: str
    screenshot: Path | None = None


@dataclass
class BrowserFlowResult:
    """What the browser flow saw, step by step, and whether the credit reached the screen."""

    egm_id: str
    amount: int
    currency: str
    qr_url: str | None = None
    meter_before: int | None = None
    meter_after: int | None = None
    payment_status: str | None = None
    headline: str | None = None
    steps: list[BrowserStep] = field(default_factory=list)
    error: BrowserFlowError | None = None

    @property
    def ok(self) -> bool:
        """Credited, and the EGM screen showed the meter go up by the amount."""
        return (self.error is None and self.payment_status == "CREDITED"
                and self.meter_before is not None
                and self.meter_after == self.meter_before + self.amount)

    def to_json(self) -> dict[str, Any]:
        """The machine-readable result `scanpay flow --browser --json` prints."""
        return {
            "egmId": self.egm_id, "ok": self.ok, "qrUrl": self.qr_url,
            "payment": {"status": self.payment_status, "headline": self.headline,
                        "amount": self.amount, "currency": self.currency},
            "meter": {"before": self.meter_before, "after": self.meter_after},
            "steps": [{"step": s.number, "title": s.title, "detail": s.detail,
                       "screenshot": str(s.screenshot) if s.screenshot else None}
                      for s in self.steps],
            "error": str(self.error) if self.error else None,
        }


def meter_minor(text: str) -> int:
    """Minor units of a meter as the screen shows it (`$1,234.50` -> 123450).

    The screen always prints every fraction digit of the currency, so its digits alone are
    the amount in minor units, whatever the symbol or separators.
    """
    digits = re.sub(r"\D", "", text)
    if not digits:
        raise ValueError(f"no amount in the meter text {text!r}")
    return int(digits)


def _shown_meter(driver: Chrome) -> int | None:
    """The meter the EGM window shows now, or None while it shows no amount."""
    try:
        return meter_minor(driver.find_element(By.ID, "meter").text)
    except ValueError:
        return None


def major_text(minor: int, currency: str) -> str:
    """An amount as a person types it into the microsite (2050 USD -> `20.50`)."""
    digits = MINOR_DIGITS.get(currency, 2)
    whole, frac = divmod(minor, 10**digits)
    return f"{whole}.{frac:0{digits}d}" if digits else str(whole)


class BrowserFlow:
    """The browser's side of one scan-then-pay: EGM window, phone window, and the record."""

    def __init__(self, driver: Chrome, cms_url: str, options: BrowserFlowOptions,
                 on_step: Callable[[BrowserStep], None] | None = None) -> None:
        self.driver = driver
        self.cms_url = cms_url.rstrip("/")
        self.options = options
        self.on_step = on_step
        self.result = BrowserFlowResult(options.egm_id, options.amount, options.currency)
        self.egm_window: str | None = None
        self.phone_window: str | None = None

    # -- recording -------------------------------------------------------------------------

    def step(self, title: str, detail: str, shot: str | None = None,
             png: bytes | None = None) -> BrowserStep:
        """Record a step and report it, with a screenshot named `shot`: `png` when given
        (the very pixels a step looked at), else one of the current window taken now."""
        number = len(self.result.steps) + 1
        path = None
        if shot is not None:
            path = self.options.screenshots / f"{number:02d}-{shot}.png"
            if png is None:
                save_screenshot(self.driver, path)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(png)
        done = BrowserStep(number, title, detail, path)
        self.result.steps.append(done)
        if self.on_step is not None:
            self.on_step(done)
        return done

    def _wait(self, condition: Callable[[Chrome], Any], what: str) -> Any:
        try:
            return wait_until(self.driver, condition, self.options.timeout_s, what)
        except TimeoutError as exc:
            raise BrowserFlowError(what, str(exc).partition(": ")[2]) from exc

    def _script(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    # -- the EGM window --------------------------------------------------------------------

    def open_egm_screen(self) -> int:
        """Open the EGM screen, wait for its QR image to load, mark the page; the meter."""
        url = f"{self.cms_url}/egm/{self.options.egm_id}"
        self.driver.get(url)
        self.egm_window = str(self.driver.current_window_handle)
        if not self.driver.find_elements(By.ID, "meter"):
            raise BrowserFlowError("EGM screen", f"{url} shows no meter: "
                                   f"{self.driver.title or 'not an EGM screen'}")
        self._wait(lambda d: d.execute_script(
            "const i = document.getElementById('qr');"
            "return i && !i.classList.contains('hidden') && i.complete && i.naturalWidth > 0;"),
            "the EGM screen's QR image")
        self._script(f"window.{_MARK} = true;")
        text = self.driver.find_element(By.ID, "meter").text
        self.result.meter_before = meter_minor(text)
        self.step("EGM screen", f"{url}: meter {text}, QR shown")
        return self.result.meter_before

    def scan_qr(self) -> str:
        """Read the QR from a screenshot of the EGM window (retrying while it paints)."""
        self._to(self.egm_window)
        shot: list[bytes] = []

        def decoded(driver: Chrome) -> list[str] | None:
            shot[:] = [driver.get_screenshot_as_png()]
            found = decode_qr(shot[0])
            return found if len(found) == 1 else None

        url = str(self._wait(decoded, "one QR code in the EGM screen's screenshot")[0])
        self.result.qr_url = url
        self.step("scan", f"decoded from the screenshot: {url}", "egm-screen", shot[0])
        return url

    def wait_for_meter(self, expected: int) -> int:
        """Wait on the EGM window, without reloading it, for the meter to show `expected`."""
        self._to(self.egm_window)
        self._wait(lambda d: _shown_meter(d) == expected, f"the EGM screen's meter to show "
                   f"{format_money(expected, self.options.currency)}")
        if not self._script(f"return window.{_MARK} === true;"):
            raise BrowserFlowError("EGM screen", "the page was reloaded: the meter did not "
                                   "update by itself")
        text = self.driver.find_element(By.ID, "meter").text
        self.result.meter_after = meter_minor(text)
        self.step("EGM screen", f"meter {text} (updated without a reload)", "egm-credited")
        return self.result.meter_after

    # -- the phone window ------------------------------------------------------------------

    def open_on_phone(self, url: str) -> str:
        """Open `url` in a phone-sized window; the payment page's heading."""
        self.phone_window = open_window(self.driver)
        as_phone(self.driver)
        self.driver.get(url)
        if not self.driver.find_elements(By.CSS_SELECTOR, "form.pay"):
            heading = self._heading()
            raise BrowserFlowError("payment page", f"no payment form at {url}: {heading}")
        heading = self._heading()
        width = self._script("return window.innerWidth;")
        self.step("phone", f"{heading} ({width} px wide)", "phone-payment-page")
        return heading

    def choose_amount(self) -> str:
        """Pick the amount's button when the page offers it, else type it; the amount shown."""
        amount, currency = self.options.amount, self.options.currency
        buttons = self.driver.find_elements(
            By.XPATH, f"//label[input[@name='amount' and @value='{amount}']]")
        if buttons:
            buttons[0].click()
            return str(buttons[0].text)
        field_ = self.driver.find_element(By.ID, "custom_amount")
        field_.clear()
        field_.send_keys(major_text(amount, currency))
        return format_money(amount, currency)

    def approve(self) -> None:
        """Choose the amount, check the confirmation shows it, log in at the demo bank, and
        click Approve."""
        shown = self.choose_amount()
        self.driver.find_element(By.ID, "continue").click()
        confirmed = self._wait(self._confirmed_amount, "the amount's confirmation")
        if confirmed != shown:
            raise BrowserFlowError("confirm", f"chose {shown} but the page confirms {confirmed}")
        self.driver.find_element(By.ID, "username").send_keys(self.options.username)
        self.driver.find_element(By.ID, "password").send_keys(self.options.password)
        self.step("demo bank", f"amount {shown}, user {self.options.username}",
                  "phone-filled")
        self.driver.find_element(By.ID, "approve").click()

    def _confirmed_amount(self, driver: Chrome) -> str | None:
        """The amount the confirmation page shows; a refusal ends the wait with its text."""
        state = driver.execute_script(
            "const a = document.getElementById('confirm-amount');"
            "const e = document.getElementById('form-error');"
            "return {amount: a && a.textContent, error: e && e.textContent};")
        if state.get("error"):
            raise BrowserFlowError("amount", f"the microsite refused: {state['error'].strip()}")
        amount = state.get("amount")
        return str(amount).strip() if amount else None

    def wait_for_receipt(self) -> str:
        """Wait for the receipt's definite outcome (it reloads itself while pending)."""
        self._to(self.phone_window)
        status = self._wait(self._receipt_status, "the payment's outcome")
        self.result.payment_status = str(status)
        self.result.headline = self._heading()
        self.step("result", f"{status}: {self.result.headline}", "phone-result")
        return self.result.payment_status

    def _receipt_status(self, driver: Chrome) -> str | None:
        """The receipt's status once definite; a form error ends the wait with its text."""
        state = driver.execute_script(
            "const r = document.querySelector('section.result');"
            "const e = document.getElementById('form-error');"
            "return {status: r && r.dataset.status, error: e && e.textContent};")
        if state.get("error"):
            raise BrowserFlowError("approve", f"the microsite refused: {state['error'].strip()}")
        status = state.get("status")
        return str(status) if status in DEFINITE else None

    # -- helpers ---------------------------------------------------------------------------

    def _to(self, window: str | None) -> None:
        if window is None:
            raise BrowserFlowError("browser", "that window was never opened")
        self.driver.switch_to.window(window)

    def _receipt_reason(self) -> str:
        """The receipt's plain-words reason (its first paragraph), or `no reason shown`."""
        lines = self.driver.find_elements(By.CSS_SELECTOR, "section.result p")
        return " ".join(lines[0].text.split()) if lines else "no reason shown"

    def _heading(self) -> str:
        headings = self.driver.find_elements(By.TAG_NAME, "h1")
        return " ".join(headings[0].text.split()) if headings else (self.driver.title or "?")

    def run(self) -> BrowserFlowResult:
        """All the steps in order; a failed step ends the run and is kept in the result."""
        try:
            before = self.open_egm_screen()
            self.open_on_phone(self.scan_qr())
            self.approve()
            status = self.wait_for_receipt()
            if status != "CREDITED":
                raise BrowserFlowError("result", f"the payment ended {status}: "
                                       f"{self.result.headline}; {self._receipt_reason()}")
            self.wait_for_meter(before + self.options.amount)
        except BrowserFlowError as exc:
            self.result.error = exc
        except WebDriverException as exc:
            self.result.error = BrowserFlowError("browser", exc.msg or type(exc).__name__)
        return self.result


def check_screen_reachable(cms_url: str, egm_id: str, timeout_s: float) -> None:
    """Fail fast, before starting a browser, when the EGM screen cannot be fetched."""
    url = f"{cms_url.rstrip('/')}/egm/{egm_id}"
    try:
        response = CmsApi.egm_screen_at(cms_url, egm_id, timeout_s)
    except HTTPError as exc:
        raise BrowserFlowError("EGM screen", f"cannot reach {url} ({exc})",
                               unreachable=True) from exc
    if response.status_code == 404:
        raise BrowserFlowError("EGM screen", f"the CMS has no EGM {egm_id} ({url})")
    if response.status_code != 200:
        raise BrowserFlowError("EGM screen", f"{url} answered HTTP {response.status_code}")


def run_browser_flow(driver: Chrome, cms_url: str, options: BrowserFlowOptions,
                     on_step: Callable[[BrowserStep], None] | None = None) -> BrowserFlowResult:
    """One scan-then-pay in `driver` against the CMS at `cms_url`; never raises for a step."""
    try:
        check_screen_reachable(cms_url, options.egm_id, options.timeout_s)
    except BrowserFlowError as exc:
        result = BrowserFlowResult(options.egm_id, options.amount, options.currency)
        result.error = exc
        return result
    return BrowserFlow(driver, cms_url, options, on_step).run()
