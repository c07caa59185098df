"""An injected fault shows on the sequence line it affected, in every view of a sequence.

A sim journals an apply_then_drop funding with the app's `201 APPLIED` and the fault's label;
the caller heard nothing. `scanpay flow`, report.json, the JUnit text and report.html must
say so, never show it as a normal 201.
"""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser

import pytest
from rich.console import Console

from harness.certify.results import Exchange, RunResult, ScenarioResult
from harness.report.html import render_html
from harness.report.text import exchange_line
from harness.sequence.faults import fault_effect, fault_tag, outcome_text
from harness.sequence.messages import Message, build_sequence, render_sequence
from harness.sequence.recorder import exchange
from tests.unit.test_sequence import MARKS, RUN, pay_journals

DROPPED = ("201 APPLIED, response dropped by fault (apply_then_drop, rule 3): "
           "the caller saw no answer")


def faulted_sequence(fault: str | None = "apply_then_drop (rule 3)") -> list[Message]:
    """The flow of `pay_journals`, its funding (CMS entry 23) journaled with `fault`."""
    trustly, cms = pay_journals()
    cms[-1]["fault"] = fault
    return build_sequence(trustly, cms, correlation_id=RUN, boundaries=MARKS)


def funding(messages: list[Message]) -> Message:
    return next(m for m in messages if m.entry.path == "/cws/v1/fundings")


def test_flow_line_of_a_dropped_funding_says_the_caller_saw_no_answer() -> None:
    messages = faulted_sequence()
    line = funding(messages).text()
    assert line == f"7. TPAS -> CMS  POST /cws/v1/fundings  {DROPPED}  10 ms"
    out = io.StringIO()
    render_sequence(Console(file=out, width=300, color_system=None), messages)
    printed = next(text for text in out.getvalue().splitlines() if "/cws/v1/fundings" in text)
    assert DROPPED in printed
    assert not printed.rstrip().endswith("201 APPLIED  10 ms")


def test_flow_json_carries_the_fault_label() -> None:
    messages = faulted_sequence()
    shown = funding(messages).to_json()
    assert shown["fault"] == "apply_then_drop (rule 3)"
    assert shown["status"] == 201 and shown["note"] == "APPLIED"
    assert DROPPED in shown["line"]
    assert all(m.to_json()["fault"] is None for m in messages if m is not funding(messages))


def test_a_line_without_a_fault_reads_as_before() -> None:
    line = funding(faulted_sequence(None)).text()
    assert line.endswith("POST /cws/v1/fundings  201 APPLIED  10 ms")


@pytest.mark.parametrize(("status", "note", "label", "shown"), [
    (444, "", "drop (rule 2)", "444, connection dropped by fault (drop, rule 2) before the "
                               "request was handled: the caller saw no answer"),
    (503, "FAULT_INJECTED", "status 503 (rule 4)",
     "503 FAULT_INJECTED, answer injected by fault (status 503, rule 4): the request was not "
     "handled"),
    (201, "APPLIED", "delay 2000ms (rule 5)",
     "201 APPLIED, delayed by fault (delay 2000ms, rule 5)"),
    (201, "APPLIED", "apply_then_drop", "201 APPLIED, response dropped by fault "
                                        "(apply_then_drop): the caller saw no answer"),
    (500, "", "crash (rule 9)", "500, affected by fault (crash, rule 9)"),
])
def test_every_action_is_worded_with_what_the_caller_saw(
        status: int, note: str, label: str, shown: str) -> None:
    assert outcome_text(status, note, label) == shown


def test_labels_keep_their_rule_number() -> None:
    assert fault_tag("apply_then_drop (rule 12)") == "apply_then_drop, rule 12"
    assert fault_tag("  odd   label ") == "odd label"
    assert fault_effect("") == "affected by fault ()"


def test_report_exchange_carries_the_fault_through_json_and_text() -> None:
    messages = faulted_sequence()
    seen = [exchange(message, {"rule 3"}) for message in messages]  # scrubbed like a secret
    dropped = next(e for e in seen if e.path == "/cws/v1/fundings")
    assert dropped.fault == "apply_then_drop (***)"
    again = Exchange.from_json(json.loads(json.dumps(exchange(funding(messages), set()).to_json())))
    assert again.fault == "apply_then_drop (rule 3)"
    assert exchange_line(again) == f"7.    TPAS -> CMS  POST /cws/v1/fundings  {DROPPED}  10 ms"
    assert Exchange.from_json({**again.to_json(), "fault": None}).fault is None


class _Rows(HTMLParser):
    """The sequence rows of a report page: classes, text, and the status span's classes."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self._row: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and "seq-row" in (found.get("class") or ""):
            self._row = {"class": found.get("class") or "", "text": "", "status": ""}
            self.rows[found.get("data-n") or ""] = self._row
        elif tag == "span" and self._row is not None and "status" in (found.get("class") or ""):
            self._row["status"] = found.get("class") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row is not None:
            self._row["text"] += data


def test_html_marks_the_faulted_row_without_script() -> None:
    sequence = [exchange(message, set()) for message in faulted_sequence()]
    run = RunResult("embedded", "embedded", "2026-12-06T20:00:00Z", 1.0, scenarios=[
        ScenarioResult("PAY-005", "Lost answer", "", ("faults",), "passed", 0.5,
                       sequence=sequence)])
    page = render_html(run)
    parser = _Rows()
    parser.feed(page)
    row = parser.rows["7"]
    assert "faulted" in row["class"].split()
    assert "unseen" in row["status"].split()
    text = " ".join(row["text"].split())
    assert "Fault response dropped by fault (apply_then_drop, rule 3): the caller saw no answer" \
        in text
    assert all("faulted" not in r["class"].split() for n, r in parser.rows.items() if n != "7")
    assert "1 exchange below was affected by a fault injected on purpose" in page
