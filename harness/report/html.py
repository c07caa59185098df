"""`report.html`: one self-contained page a person reads to see what a certification run found.

The page is rendered by Jinja2 with autoescaping from `templates/report.html`; every string
that came from the target (titles, reasons, excerpts, paths) reaches the template as plain
text, so it is escaped there and cannot become markup. The page loads nothing from anywhere
(inline CSS, one small inline script) and says so in its Content-Security-Policy, whose script
hash admits only that script: even a mistake in escaping could not run someone else's.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from harness.certify.results import (
    DISCLAIMER,
    OUTCOMES,
    Check,
    Exchange,
    RunResult,
    ScenarioResult,
    clock_note,
)
from harness.report.svg import sequence_svg
from harness.report.text import clean_text, format_seconds, verdict_text
from harness.sequence.faults import caller_saw_no_answer, fault_effect
from simkit.clock import parse_instant

TEMPLATES = Path(__file__).parent / "templates"
MAX_DEPTH_CLASS = 6  # deeper nesting is drawn at this indent
# Problems first: what a reader of a failed run looks for, then what was not run.
_OUTCOME_RANK = {"error": 0, "failed": 1, "skipped": 2, "passed": 3}
_NOT_ANCHOR = re.compile(r"[^A-Za-z0-9_-]+")
# The verdict badge: CSS class and label. INCOMPLETE is amber, never green: skips are untested.
VERDICT_BADGES = {"PASSED": ("ok", "Passed"), "FAILED": ("bad", "Failed"),
                  "INCOMPLETE": ("incomplete", "Incomplete"), "ERROR": ("bad", "Not run")}

# The page's only script: the outcome filter. Its hash goes into the CSP (see module doc).
FILTER_SCRIPT = """
(function () {
  var bar = document.getElementById('filters');
  if (!bar) { return; }  // a run that never started has no scenarios to filter
  bar.hidden = false;
  bar.addEventListener('click', function (event) {
    var button = event.target.closest('button[data-filter]');
    if (!button) { return; }
    document.body.setAttribute('data-filter', button.getAttribute('data-filter'));
    bar.querySelectorAll('button').forEach(function (b) {
      b.setAttribute('aria-pressed', b === button ? 'true' : 'false');
    });
  });
  document.getElementById('expand-all').addEventListener('click', function () {
    var open = this.getAttribute('aria-pressed') !== 'true';
    this.setAttribute('aria-pressed', open ? 'true' : 'false');
    document.querySelectorAll('details.bodies').forEach(function (d) { d.open = open; });
  });
}());
"""


@dataclass(frozen=True)
class RowView:
    """One sequence line as the template draws it (all strings cleaned, none escaped yet).

    `fault` words what an injected fault did to the exchange ("" when none fired);
    `unseen` says the caller never received the status shown (the fault dropped it).
    """

    n: int
    kind: str
    sender: str
    receiver: str
    call: str
    status: str
    status_class: str
    note: str
    latency: str
    depth: int
    request: str
    response: str
    fault: str = ""
    unseen: bool = False


@dataclass(frozen=True)
class CheckView:
    """One check as the template draws it."""

    description: str
    passed: bool
    expected: str
    observed: str


@dataclass(frozen=True)
class ScenarioView:
    """One scenario as the template draws it."""

    anchor: str
    id: str
    title: str
    requirement: str
    tags: tuple[str, ...]
    outcome: str
    duration: str
    reason: str
    checks: tuple[CheckView, ...]
    checks_passed: int
    rows: tuple[RowView, ...]
    sequence_note: str
    faulted_rows: int = 0  # sequence lines an injected fault affected
    diagram: Markup = field(default_factory=Markup)  # the sequence drawn (`svg`), escaped


def _status_class(status: int | None) -> str:
    if status is None:
        return "none"
    if status < 300:
        return "ok"
    return "redirect" if status < 400 else "bad"


def _row(exchange: Exchange, opened: list[int]) -> RowView:
    """`opened` holds the numbers of the request lines still waiting for their response."""
    if exchange.kind == "response":
        call = f"response to #{opened.pop()}" if opened else "response"
    else:
        call = f"{exchange.method} {exchange.path}"
        if exchange.kind == "request":
            opened.append(exchange.n)
    return RowView(
        n=exchange.n, kind=exchange.kind, sender=clean_text(exchange.sender),
        receiver=clean_text(exchange.receiver), call=clean_text(call),
        status="" if exchange.status is None else str(exchange.status),
        status_class=_status_class(exchange.status), note=clean_text(exchange.note),
        latency="" if exchange.latency_ms is None else f"{exchange.latency_ms} ms",
        depth=min(max(exchange.depth, 0), MAX_DEPTH_CLASS),
        request=clean_text(exchange.request_excerpt),
        response=clean_text(exchange.response_excerpt),
        fault=clean_text(fault_effect(exchange.fault)) if exchange.fault else "",
        unseen=caller_saw_no_answer(exchange.fault))


def _rows(sequence: list[Exchange]) -> list[RowView]:
    opened: list[int] = []
    return [_row(exchange, opened) for exchange in sequence]


def _check(check: Check) -> CheckView:
    return CheckView(clean_text(check.description), check.passed, clean_text(check.expected),
                     clean_text(check.observed))


def _scenario(result: ScenarioResult, index: int) -> ScenarioView:
    # The index keeps anchors unique even if two ids differ only in punctuation.
    anchor = f"s{index}-" + _NOT_ANCHOR.sub("-", result.id).strip("-")
    rows = tuple(_rows(result.sequence))
    return ScenarioView(
        anchor=anchor, id=clean_text(result.id), title=clean_text(result.title),
        requirement=clean_text(result.requirement),
        tags=tuple(clean_text(tag) for tag in result.tags), outcome=result.outcome,
        duration=format_seconds(result.duration_s), reason=clean_text(result.reason),
        checks=tuple(_check(check) for check in result.checks),
        checks_passed=sum(check.passed for check in result.checks),
        rows=rows, sequence_note=clean_text(result.sequence_note),
        faulted_rows=sum(1 for row in rows if row.fault),
        diagram=Markup(sequence_svg(rows, anchor)))  # noqa: S704 - every label escaped there


def ordered(run: RunResult) -> list[ScenarioResult]:
    """The scenarios problems first (error, failed, skipped, passed), catalogue order within."""
    return sorted(run.scenarios, key=lambda result: _OUTCOME_RANK.get(result.outcome, 0))


def _started(started_at: str) -> str:
    try:
        return parse_instant(started_at).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return clean_text(started_at)


def script_hash(script: str) -> str:
    """The CSP source (`'sha256-...'`) that admits exactly this inline script."""
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


@cache
def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                       autoescape=select_autoescape(default=True, default_for_string=True),
                       trim_blocks=True, lstrip_blocks=True)


def render_html(run: RunResult) -> str:
    """The report page for `run`, as one HTML document."""
    scenarios = [_scenario(result, index) for index, result in enumerate(ordered(run), 1)]
    verdict_class, verdict_label = VERDICT_BADGES[run.verdict]
    return _environment().get_template("report.html").render(
        target=clean_text(run.target), target_kind=clean_text(run.target_kind),
        started=_started(run.started_at), duration=format_seconds(run.duration_s),
        tool_version=clean_text(run.tool_version), verdict=run.verdict,
        verdict_class=verdict_class, verdict_label=verdict_label,
        verdict_text=clean_text(verdict_text(run)), disclaimer=DISCLAIMER,
        server_log=clean_text(run.server_log), clock_note=clean_text(clock_note(run)),
        counts=run.counts(), total=len(run.scenarios), outcomes=OUTCOMES, scenarios=scenarios,
        script=FILTER_SCRIPT, script_hash=script_hash(FILTER_SCRIPT))


def write_html(run: RunResult, path: Path) -> Path:
    """Write `report.html` (UTF-8) and return its path."""
    path.write_text(render_html(run), encoding="utf-8")
    return path
