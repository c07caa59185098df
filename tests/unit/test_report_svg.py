"""The HTML report draws each scenario's sequence: one lifeline per system, one arrow per line.

The drawing is read back as XML from the written report.html, as any SVG reader would see it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from html import unescape
from pathlib import Path

from harness.certify.results import Exchange, RunResult, ScenarioResult
from harness.report.writers import write_reports
from tests.unit.report_samples import happy_sequence, sample_run

SVG = "{http://www.w3.org/2000/svg}"


def _diagrams(html: str) -> dict[str, ET.Element]:
    """Each scenario section's diagram, parsed, by scenario id."""
    found: dict[str, ET.Element] = {}
    for section in html.split("<section")[1:]:
        scenario = re.search(r'data-scenario-id="([^"]*)"', section)
        drawn = re.search(r'<svg class="sequence-diagram".*?</svg>', section, re.DOTALL)
        if scenario and drawn:
            found[unescape(scenario.group(1))] = ET.fromstring(drawn.group(0))
    return found


def _groups(svg: ET.Element, kind: str) -> list[ET.Element]:
    return [g for g in svg.iter(f"{SVG}g") if kind in g.get("class", "").split()]


def _report(run: RunResult, tmp_path: Path) -> str:
    return write_reports(run, tmp_path).html.read_text(encoding="utf-8")


def test_one_lifeline_per_system_and_one_arrow_per_line(tmp_path: Path) -> None:
    diagrams = _diagrams(_report(sample_run(), tmp_path))
    svg = diagrams["QR-001"]
    sequence = happy_sequence()
    systems = {e.sender for e in sequence} | {e.receiver for e in sequence}
    lifelines = [g.get("data-party", "") for g in _groups(svg, "lifeline")]
    assert sorted(lifelines) == sorted(systems)  # each once
    assert lifelines.index("EGM") < lifelines.index("Phone") < lifelines.index("Trustly")
    arrows = _groups(svg, "arrow")
    assert [int(g.get("data-n", "0")) for g in arrows] == [e.n for e in sequence]
    assert [(g.get("data-from"), g.get("data-to")) for g in arrows] == [
        (e.sender, e.receiver) for e in sequence]
    assert "k-response" in arrows[2].get("class", "")  # the CMS's answer to the EGM, dashed
    assert not _groups(svg, "faulted")


def test_a_faulted_exchange_is_drawn_as_such(tmp_path: Path) -> None:
    sequence = happy_sequence()
    sequence[1] = replace(sequence[1], fault="apply_then_drop (rule 3)")
    sequence[4] = replace(sequence[4], fault="delay 2000ms (rule 4)")
    run = RunResult("embedded", "embedded", "2026-12-06T20:00:00.000Z", 1.0, scenarios=[
        ScenarioResult("PAY-005", "Lost answer", "Credited once.", ("pay",), "passed", 0.5,
                       sequence=sequence)])
    svg = _diagrams(_report(run, tmp_path))["PAY-005"]
    faulted = _groups(svg, "faulted")
    assert [g.get("data-n") for g in faulted] == ["2", "5"]
    dropped, delayed = faulted
    assert dropped.find(f".//{SVG}path[@class='dropped']") is not None  # crossed arrowhead
    assert delayed.find(f".//{SVG}path[@class='dropped']") is None  # the caller did hear
    title = dropped.find(f"{SVG}title")
    assert title is not None and "apply_then_drop" in (title.text or "")


def test_hostile_names_stay_text_in_the_drawing(tmp_path: Path) -> None:
    html = _report(sample_run(), tmp_path)
    hostile = next(svg for sid, svg in _diagrams(html).items() if sid.startswith("BAD-"))
    assert not list(hostile.iter(f"{SVG}script")) and not list(hostile.iter("script"))
    parties = [g.get("data-party") or "" for g in _groups(hostile, "lifeline")]
    assert any("<script>" in party for party in parties)  # parsed back as text, not markup


def test_no_sequence_no_drawing(tmp_path: Path) -> None:
    run = RunResult("embedded", "embedded", "2026-12-06T20:00:00.000Z", 1.0, scenarios=[
        ScenarioResult("SCAN-001", "t", "r", (), "skipped", 0.0, reason="no hook")])
    assert "sequence-diagram" not in _report(run, tmp_path)


def test_exchange_type_is_what_the_report_draws() -> None:
    assert Exchange(1, "A", "B", "GET", "/", 200, 1).fault is None
