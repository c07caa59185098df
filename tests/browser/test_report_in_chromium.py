"""The HTML report opens offline in a real Chromium and shows the message sequences.

Unit tests read the markup; this one checks what a person sees: the rows are laid out and
visible, nested calls are indented, bodies unfold on a click, the page's own script runs under
its Content-Security-Policy while the hostile strings in the run stay text, and a screenshot
of the sequence has real content in it.
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from harness.browser.chromium import save_screenshot
from harness.certify.results import RunResult, ScenarioResult
from harness.report.writers import write_reports
from tests.unit.report_samples import SCRIPT, happy_sequence, sample_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LAPTOP = (1366, 900)
PASS_GREEN = (0x18, 0x79, 0x4E)  # --pass in the report's CSS: 2xx statuses, PASSED badges


def _open(chromium: Chrome, tmp_path: Path) -> None:
    paths = write_reports(sample_run(), tmp_path / "report")
    chromium.set_window_size(*LAPTOP)
    chromium.get(paths.html.as_uri())


def _section(chromium: Chrome, scenario_id: str) -> WebElement:
    return chromium.find_element(By.CSS_SELECTOR, f'section[data-scenario-id="{scenario_id}"]')


def _close_to(pixel: object, colour: tuple[int, int, int], tolerance: int = 24) -> bool:
    assert isinstance(pixel, tuple)  # an RGB image's colours are (r, g, b)
    return all(abs(int(a) - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def test_sequence_rows_are_visible_and_screenshot_has_content(
        chromium: Chrome, tmp_path: Path) -> None:
    _open(chromium, tmp_path)
    assert chromium.title.startswith("Scan and Pay certification dry run:")
    section = _section(chromium, "QR-001")
    chromium.execute_script("arguments[0].scrollIntoView()", section)
    rows = section.find_elements(By.CSS_SELECTOR, "table.sequence tr.seq-row")
    assert [row.find_element(By.TAG_NAME, "td").text for row in rows] == ["1", "2", "3", "4", "5"]
    assert all(row.is_displayed() and row.size["height"] > 10 for row in rows)
    assert rows[3].text.split() == ["4", "Phone", "→", "Trustly", "GET", "/api/v1/scan/abc",
                                    "200", "ACTIVE", "3", "ms"]
    who = [row.find_element(By.CSS_SELECTOR, "td.who") for row in rows]
    indent = [float(chromium.execute_script(
        "return parseFloat(getComputedStyle(arguments[0]).paddingLeft)", cell)) for cell in who]
    assert indent[1] > indent[0] + 15 and indent[0] == indent[2] == indent[3]  # row 2 nested

    png = save_screenshot(chromium, tmp_path / "report-sequence.png")
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size[0] >= 1000 and image.size[1] >= 600
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50, "the screenshot is (nearly) one colour"
    green = sum(int(count) for count, pixel in colours if _close_to(pixel, PASS_GREEN))
    assert green > 100, "no green status codes or badge drawn"


def test_bodies_unfold_on_click(chromium: Chrome, tmp_path: Path) -> None:
    _open(chromium, tmp_path)
    row = _section(chromium, "QR-001").find_element(By.CSS_SELECTOR, 'tr.seq-row[data-n="5"]')
    chromium.execute_script("arguments[0].scrollIntoView()", row)
    response = row.find_elements(By.CSS_SELECTOR, ".excerpts pre")[1]
    assert not response.is_displayed()
    row.find_element(By.TAG_NAME, "summary").click()
    assert response.is_displayed()
    assert response.text == '{"status": "CREDITED"}'


def test_filter_script_runs_and_hostile_strings_stay_text(
        chromium: Chrome, tmp_path: Path) -> None:
    _open(chromium, tmp_path)
    with pytest.raises(NoAlertPresentException):
        chromium.switch_to.alert.text  # noqa: B018 - reading it is what raises
    hostile = _section(chromium, f"BAD-{SCRIPT}")
    assert SCRIPT in hostile.find_element(By.CSS_SELECTOR, "h2 .title").text
    assert len(chromium.find_elements(By.TAG_NAME, "script")) == 1

    filters = chromium.find_element(By.ID, "filters")
    assert filters.is_displayed(), "the page script did not run (CSP hash mismatch?)"
    filters.find_element(By.CSS_SELECTOR, 'button[data-filter="problems"]').click()
    assert _section(chromium, "PAY-007").is_displayed()
    assert _section(chromium, "LIM-003").is_displayed()
    assert not _section(chromium, "QR-001").is_displayed()
    assert not _section(chromium, "CLK-002").is_displayed()


FAULT_RED = (0xB4, 0x23, 0x18)  # the diagram's fault colour


def test_the_drawn_sequence_shows_every_system_every_message_and_the_fault(
        chromium: Chrome, tmp_path: Path) -> None:
    sequence = happy_sequence()
    sequence[1] = replace(sequence[1], fault="apply_then_drop (rule 3)")
    run = RunResult("embedded", "embedded", "2026-12-06T20:00:00.000Z", 1.0, scenarios=[
        ScenarioResult("PAY-005", "A funding whose answer is lost is credited once",
                       "Credited once.", ("pay",), "passed", 0.5, sequence=sequence)])
    paths = write_reports(run, tmp_path / "report")
    chromium.set_window_size(*LAPTOP)
    chromium.get(paths.html.as_uri())
    diagram = _section(chromium, "PAY-005").find_element(By.CSS_SELECTOR,
                                                         "svg.sequence-diagram")
    chromium.execute_script("arguments[0].scrollIntoView()", diagram)
    assert diagram.is_displayed() and diagram.size["height"] > 100
    lifelines = diagram.find_elements(By.CSS_SELECTOR, "g.lifeline")
    systems = {e.sender for e in sequence} | {e.receiver for e in sequence}
    assert sorted(g.get_attribute("data-party") or "" for g in lifelines) == sorted(systems)
    arrows = diagram.find_elements(By.CSS_SELECTOR, "g.arrow")
    assert len(arrows) == len(sequence)
    assert all(arrow.size["width"] > 20 for arrow in arrows)  # laid out, not collapsed
    assert [a.get_attribute("data-n") for a in diagram.find_elements(
        By.CSS_SELECTOR, "g.arrow.faulted")] == ["2"]

    png = diagram.screenshot_as_png
    (tmp_path / "report-diagram.png").write_bytes(png)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    red = sum(int(count) for count, pixel in colours if _close_to(pixel, FAULT_RED))
    assert red > 30, "the faulted arrow is not drawn in the fault colour"
