"""The reports of a certification run say what the run found, in every format, safely."""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console

from harness.certify.results import RunResult
from harness.report.html import FILTER_SCRIPT, render_html, script_hash
from harness.report.text import clean_text, exchange_line
from harness.report.writers import ReportPaths, render_summary, write_reports
from tests.unit.report_samples import (
    CDATA_END,
    CONTROL,
    NON_ASCII,
    SCRIPT,
    happy_sequence,
    sample_run,
)


class _Page(HTMLParser):
    """What a browser would load and show: attributes, scripts, sections and sequence rows."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.attrs: list[tuple[str, str, str]] = []  # (tag, name, value)
        self.scripts: list[str] = []
        self.section_ids: list[str] = []
        self.rows: dict[tuple[str, str], str] = {}  # (scenario id, n) -> row text
        self.row_classes: dict[tuple[str, str], str] = {}
        self._scenario = ""
        self._row: tuple[str, str] | None = None
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.attrs += [(tag, name, value) for name, value in values.items()]
        classes = values.get("class", "").split()
        if tag == "section" and "scenario" in classes:
            self._scenario = values["data-scenario-id"]
            self.section_ids.append(self._scenario)
        if tag == "tr" and "seq-row" in classes:
            self._row = (self._scenario, values["data-n"])
            self.rows[self._row] = ""
            self.row_classes[self._row] = values["class"]
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)
        if self._row is not None:
            self.rows[self._row] += " " + " ".join(data.split())


def _page(run: RunResult) -> tuple[str, _Page]:
    text = render_html(run)
    page = _Page()
    page.feed(text)
    page.close()
    return text, page


@pytest.fixture
def written(tmp_path: Path) -> tuple[RunResult, ReportPaths]:
    run = sample_run()
    return run, write_reports(run, tmp_path / "new" / "reports")


def test_write_reports_creates_the_dir_and_all_four_files(
        written: tuple[RunResult, ReportPaths], tmp_path: Path) -> None:
    _, paths = written
    folder = tmp_path / "new" / "reports"
    assert (paths.json, paths.junit, paths.html, paths.text) == (
        folder / "report.json", folder / "junit.xml", folder / "report.html",
        folder / "report.txt")
    assert all(path.stat().st_size > 500
               for path in (paths.json, paths.junit, paths.html, paths.text))


def test_report_json_is_the_run_and_round_trips(written: tuple[RunResult, ReportPaths]) -> None:
    run, paths = written
    raw = json.loads(paths.json.read_bytes().decode("utf-8"))
    assert raw == run.to_json()
    assert RunResult.from_json(raw).to_json() == run.to_json()
    assert raw["counts"] == {"passed": 1, "failed": 2, "skipped": 1, "error": 1}
    assert NON_ASCII in paths.json.read_text(encoding="utf-8")  # readable, not \u-escaped


def test_junit_counts_match_the_run(written: tuple[RunResult, ReportPaths]) -> None:
    _, paths = written
    root = ET.parse(paths.junit).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    expected = {"name": "scanpay-certify", "tests": "5", "failures": "2", "errors": "1",
                "skipped": "1", "time": "2.500", "timestamp": "2025-06-01T10:15:30"}
    assert {key: suite.get(key) for key in expected} == expected
    cases = suite.findall("testcase")
    assert len(cases) == 5
    assert len(suite.findall("testcase/failure")) == 2
    assert len(suite.findall("testcase/error")) == 1
    assert len(suite.findall("testcase/skipped")) == 1


def _case(root: ET.Element, name_start: str) -> ET.Element:
    (case,) = [c for c in root.iter("testcase") if c.get("name", "").startswith(name_start)]
    return case


def test_junit_failure_carries_expected_and_observed(
        written: tuple[RunResult, ReportPaths]) -> None:
    root = ET.parse(written[1].junit).getroot()
    case = _case(root, "PAY-007 ")
    assert case.get("name") == "PAY-007 Replayed QR is rejected"
    assert case.get("classname") == "scanpay.payments"
    assert case.get("time") == "1.250"
    failure = case.find("failure")
    assert failure is not None
    message = failure.get("message", "")
    assert "replay rejected" in message
    assert "expected HTTP 409 QR_ALREADY_USED" in message
    assert "observed HTTP 201 CREDITED" in message
    assert "[FAILED] replay rejected" in (failure.text or "")
    assert "first payment credited" not in (failure.text or "")  # only failed checks


def test_junit_error_skip_and_sequence(written: tuple[RunResult, ReportPaths]) -> None:
    root = ET.parse(written[1].junit).getroot()
    error = _case(root, "LIM-003").find("error")
    assert error is not None and "connection refused" in error.get("message", "")
    skipped = _case(root, "CLK-002").find("skipped")
    assert skipped is not None and skipped.get("message") == "target offers no clock hook"
    out = _case(root, "QR-001").findtext("system-out") or ""
    assert "4. Phone -> Trustly  GET /api/v1/scan/abc  200 ACTIVE  3 ms" in out
    assert "2.    CMS -> Trustly  POST /auth-service/v1/qr-tokens  201 ACTIVE  7 ms" in out
    assert "3. CMS -> EGM  201  12 ms" in out
    assert "Requirement: The EGM shows a QR" in out


def test_junit_escapes_and_strips_what_xml_forbids(
        written: tuple[RunResult, ReportPaths]) -> None:
    raw = written[1].junit.read_bytes()
    assert b"\x07" not in raw and b"\x00" not in raw and b"\x1b" not in raw
    assert b"<script>" not in raw
    case = _case(ET.parse(written[1].junit).getroot(), "BAD-")
    assert case.get("name") == f"BAD-{SCRIPT} Title {SCRIPT} {CDATA_END}"
    out = case.findtext("system-out") or ""
    assert f"/scan/{SCRIPT}{CDATA_END}" in out
    failure = case.find("failure")
    assert failure is not None
    assert "obs bell\\x07nul\\x00esc\\x1b \\udc80" in (failure.text or "")
    assert NON_ASCII in (failure.text or "")


def test_html_lists_every_scenario_problems_first() -> None:
    run = sample_run()
    _, page = _page(run)
    assert page.section_ids == ["LIM-003", "PAY-007", f"BAD-{SCRIPT}", "CLK-002", "QR-001"]
    summary_links = [value for tag, name, value in page.attrs if tag == "a" and name == "href"
                     and value.startswith("#s")]
    section_anchors = [value for tag, name, value in page.attrs
                       if tag == "section" and name == "id"]
    assert summary_links == [f"#{anchor}" for anchor in section_anchors for _ in (0, 1)]


def test_html_escapes_hostile_strings() -> None:
    text, page = _page(sample_run())
    assert "<script>alert" not in text
    assert text.count("<script") == 1  # the page's own filter script, nothing else
    assert html.escape(SCRIPT) in text
    assert "\x07" not in text and "\x00" not in text and "\\x07" in text
    assert NON_ASCII in text
    assert page.scripts == [FILTER_SCRIPT]


def test_html_loads_nothing_from_outside() -> None:
    text, page = _page(sample_run())
    links = [(tag, name, value) for tag, name, value in page.attrs
             if name in ("src", "href", "action", "srcset", "poster", "data")]
    assert links, "the summary links to each scenario"
    assert all(value.startswith("#") for _, _, value in links), links
    assert "<link" not in text and "@import" not in text
    assert not re.search(r"url\((?!#)", text)  # only the drawing's own markers: url(#id)


def test_html_csp_admits_only_the_page_script() -> None:
    _, page = _page(sample_run())
    (policy,) = [value for tag, name, value in page.attrs if tag == "meta" and name == "content"
                 and value.startswith("default-src 'none'")]
    assert f"script-src {script_hash(FILTER_SCRIPT)};" in policy
    assert "unsafe-inline'; script" not in policy.replace("style-src 'unsafe-inline'; ", "")


def test_html_shows_the_sequence_rows() -> None:
    _, page = _page(sample_run())
    rows = {n: text.split() for (scenario, n), text in page.rows.items() if scenario == "QR-001"}
    assert sorted(rows, key=int) == ["1", "2", "3", "4", "5"]
    assert " ".join(rows["4"]) == "4 Phone → Trustly GET /api/v1/scan/abc 200 ACTIVE 3 ms"
    assert " ".join(rows["3"]).startswith("3 CMS → EGM response to #1 Request (empty)")
    assert " ".join(rows["3"]).endswith("201 12 ms")
    assert "d1" in page.row_classes[("QR-001", "2")].split()
    assert "d0" in page.row_classes[("QR-001", "4")].split()
    assert '{"status": "CREDITED"}' in " ".join(rows["5"])  # the expandable excerpt


def test_html_shows_checks_reason_and_counts() -> None:
    text, _ = _page(sample_run())
    assert 'class="fail"' in text and "HTTP 409 QR_ALREADY_USED" in text
    assert "target offers no clock hook" in text
    assert "the journals could not be read" in text
    assert '<div class="verdict bad" id="verdict">Failed</div>' in text
    assert '<div class="n">2</div><div class="l">failed</div>' in text


def test_html_of_an_empty_run_says_so_and_is_not_a_pass() -> None:
    run = RunResult("embedded", "embedded", "2025-06-01T10:15:30Z", 0.0)
    text, page = _page(run)
    assert "This run has no scenarios." in text
    assert '<div class="verdict incomplete" id="verdict">Incomplete</div>' in text
    assert page.section_ids == []


def test_summary_lists_scenarios_reasons_and_counts() -> None:
    console = Console(record=True, width=200, color_system=None)
    render_summary(console, sample_run())
    out = console.export_text()
    lines = {line.split("│")[1].strip(): line for line in out.splitlines()
             if line.count("│") > 3 and "ID" not in line}
    assert "QR-001" in lines and "PASSED" in lines["QR-001"]
    assert "FAILED" in lines["PAY-007"] and "second payment was CREDITED" in lines["PAY-007"]
    assert "SKIPPED" in lines["CLK-002"] and "target offers no clock hook" in lines["CLK-002"]
    assert "5 scenarios: 1 passed, 2 failed, 1 skipped, 1 error in 2.50 s  FAILED" in out
    assert "\x07" not in out


def test_summary_of_a_clean_run_has_no_reason_column() -> None:
    run = sample_run()
    run.scenarios = [s for s in run.scenarios if s.outcome == "passed"]
    console = Console(record=True, width=120, color_system=None)
    render_summary(console, run)
    out = console.export_text()
    assert "QR-001" in out and "Reason" not in out
    assert "1 scenarios: 1 passed, 0 failed, 0 skipped, 0 error in 2.50 s  PASSED" in out


def test_exchange_line_matches_the_flow_wording() -> None:
    request, nested, response, scan, _ = happy_sequence()
    assert exchange_line(request) == "1. EGM -> CMS  POST /cws/v1/egms/EGM-001/qr"
    assert exchange_line(nested).startswith("2.    CMS -> Trustly  POST")
    assert exchange_line(response) == "3. CMS -> EGM  201  12 ms"
    assert exchange_line(scan) == "4. Phone -> Trustly  GET /api/v1/scan/abc  200 ACTIVE  3 ms"


@pytest.mark.parametrize(("raw", "shown"), [
    ("tab\tnew\nline\r", "tab\tnew\nline\r"),
    (CONTROL, "bell\\x07nul\\x00esc\\x1b"),
    ("\ufffe\uffff\udc80", "\\ufffe\\uffff\\udc80"),
    (NON_ASCII, NON_ASCII),
    ("\x7f\x85", "\\x7f\\x85"),
])
def test_clean_text_keeps_what_xml_allows(raw: str, shown: str) -> None:
    assert clean_text(raw) == shown
