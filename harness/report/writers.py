"""The reports of a certification run: `report.json`, `junit.xml`, `report.html`, `report.txt`
and the console.

`scanpay certify` calls `write_reports` once the run is over and `render_summary` to print
it; each format has its own module (`junit`, `html`), and all of them read only
the `RunResult`, so they always agree with one another and with `report.json`: the same
verdict (PASSED, FAILED, INCOMPLETE, ERROR), and the same disclaimer that this is a dry run
against the project's model of Trustly, not a Trustly certification. `report.txt` is the
console summary without colours, for CI logs.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.certify.results import DISCLAIMER, OUTCOMES, RunResult, Verdict, clock_note
from harness.report.html import ordered, write_html
from harness.report.junit import write_junit
from harness.report.text import clean_text, format_seconds, one_line, verdict_text

OUTCOME_STYLES = {"passed": "green", "failed": "bold red", "error": "bold magenta",
                  "skipped": "yellow"}
VERDICT_STYLES: dict[Verdict, str] = {"PASSED": "bold green", "FAILED": "bold red",
                                      "INCOMPLETE": "bold yellow", "ERROR": "bold magenta"}
TEXT_WIDTH = 120


@dataclass(frozen=True)
class ReportPaths:
    """Where `write_reports` put each report."""

    json: Path
    junit: Path
    html: Path
    text: Path


def json_text(run: RunResult) -> str:
    """`report.json`'s text: exactly `run.to_json()`, pretty-printed."""
    return json.dumps(run.to_json(), indent=2, ensure_ascii=False) + "\n"


def write_json(run: RunResult, path: Path) -> Path:
    """Write `report.json` (UTF-8) and return its path.

    A lone surrogate (from bytes a target sent that were not UTF-8) cannot be encoded; it is
    written as its JSON escape (`\\udc80`, which `backslashreplace` produces and which can only
    occur inside a JSON string), so the file stays valid and parses back to the same text.
    """
    path.write_bytes(json_text(run).encode("utf-8", errors="backslashreplace"))
    return path


def write_reports(run: RunResult, report_dir: Path) -> ReportPaths:
    """Write `report.json`, `junit.xml` and `report.html` into `report_dir` (made if missing)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    return ReportPaths(json=write_json(run, report_dir / "report.json"),
                       junit=write_junit(run, report_dir / "junit.xml"),
                       html=write_html(run, report_dir / "report.html"),
                       text=write_text(run, report_dir / "report.txt"))


def summary_text(run: RunResult) -> str:
    """The console summary as plain text (no colours)."""
    out = io.StringIO()
    render_summary(Console(file=out, width=TEXT_WIDTH, color_system=None, force_terminal=False,
                           soft_wrap=True), run)
    return out.getvalue()


def write_text(run: RunResult, path: Path) -> Path:
    """Write `report.txt` (the summary as text, UTF-8) and return its path."""
    path.write_text(summary_text(run), encoding="utf-8", errors="backslashreplace")
    return path


def summary_table(run: RunResult) -> Table:
    """The scenarios, problems first: id, title, outcome, time and why it did not pass."""
    title = clean_text(f"Certification of {run.target} ({run.target_kind})")
    table = Table(title=title, title_justify="left")
    table.add_column("ID", style="bold", no_wrap=True)
    table.add_column("Scenario")
    table.add_column("Outcome", no_wrap=True)
    table.add_column("Time", justify="right", no_wrap=True)
    explain = any(result.outcome != "passed" for result in run.scenarios)
    if explain:  # a column of blanks would only take width from the titles
        table.add_column("Reason", overflow="fold")
    for result in ordered(run):
        style = OUTCOME_STYLES.get(result.outcome, "")
        cells: list[Text | str] = [Text(clean_text(result.id)), Text(clean_text(result.title)),
                                   Text(result.outcome.upper(), style),
                                   format_seconds(result.duration_s)]
        if explain:
            reason = "" if result.outcome == "passed" else one_line(result.reason, limit=160)
            cells.append(Text(reason))
        table.add_row(*cells)
    return table


def counts_line(run: RunResult) -> Text:
    """`12 scenarios: 10 passed, 1 failed, 0 error, 1 skipped in 4.20 s  FAILED`, coloured."""
    counts = run.counts()
    line = Text(f"{len(run.scenarios)} scenarios: ")
    for index, outcome in enumerate(OUTCOMES):
        if index:
            line.append(", ")
        style = OUTCOME_STYLES[outcome] if counts[outcome] else "dim"
        line.append(f"{counts[outcome]} {outcome}", style=style)
    line.append(f" in {format_seconds(run.duration_s)}  ")
    line.append(run.verdict, style=VERDICT_STYLES[run.verdict])
    return line


def render_summary(console: Console, run: RunResult) -> None:
    """Print the summary table and the counts (unless the run never started), then the
    verdict with its meaning and exit code, the server log, and the disclaimer."""
    if not run.diagnosis:
        console.print(summary_table(run))
        console.print(counts_line(run))
    console.print(Text(clean_text(verdict_text(run)), VERDICT_STYLES[run.verdict]))
    if clock_note(run):
        console.print(Text(clock_note(run)))
    if run.server_log:
        console.print(Text(f"The harness's own servers logged to {run.server_log}", "dim"))
    console.print(Text(DISCLAIMER, "italic"))
