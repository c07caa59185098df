"""Results: each benchmark's figures and checks, written as JSON and printed as tables.

A `Check` is one acceptance figure of issue 13 against its target: PASS or BELOW. BELOW is a
finding, not a failure of the command; a benchmark fails (exit 1) only when something did not
work: a request answered wrongly, a flow not CREDITED, a reconciliation that does not add up.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen import PhaseStats
from simkit.clock import format_instant, system_now


@dataclass(frozen=True)
class Check:
    """One figure against its target (`at_least` or at most `target`); no target: shown only."""

    name: str
    value: float | None
    target: float | None
    unit: str
    at_least: bool = True

    @property
    def verdict(self) -> str:
        """PASS, BELOW, n/a when the figure could not be measured, info without a target."""
        if self.value is None:
            return "n/a"
        if self.target is None:
            return "info"
        ok = self.value >= self.target if self.at_least else self.value <= self.target
        return "PASS" if ok else "BELOW"

    def as_dict(self) -> dict[str, Any]:
        """For the results file."""
        return {"name": self.name, "value": None if self.value is None else round(self.value, 4),
                "target": self.target, "unit": self.unit,
                "op": ">=" if self.at_least else "<=", "verdict": self.verdict}


@dataclass
class BenchResult:
    """One benchmark's outcome: its phases, extra figures, checks, problems and notes."""

    name: str
    title: str
    phases: list[PhaseStats] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # something did not work: exit 1
    notes: list[str] = field(default_factory=list)  # skipped parts, noise warnings

    @property
    def ok(self) -> bool:
        """True when everything worked (whatever the verdicts)."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """The whole result, for bench/results/<name>.json."""
        return {"benchmark": self.name, "title": self.title, "ok": self.ok,
                "phases": [p.as_dict() for p in self.phases], "figures": self.figures,
                "checks": [c.as_dict() for c in self.checks], "problems": self.problems,
                "notes": self.notes}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False, timeout=5).stdout.strip()
    except OSError:
        commit = ""
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "load_average": [round(v, 2) for v in
                                                               os.getloadavg()],
            "commit": commit, "at": format_instant(system_now())}


def write_results(directory: Path, results: list[BenchResult], run: dict[str, Any]) -> Path:
    """One JSON file per benchmark and `summary.json`; answer the summary's path."""
    directory.mkdir(parents=True, exist_ok=True)
    for result in results:
        (directory / f"{result.name}.json").write_text(
            json.dumps({**result.as_dict(), "run": run}, indent=2) + "\n")
    summary = {
        "run": run,
        "ok": all(r.ok for r in results),
        "checks": [{"benchmark": r.name, **c.as_dict()} for r in results for c in r.checks],
        "problems": {r.name: r.problems for r in results if r.problems},
        "notes": {r.name: r.notes for r in results if r.notes},
    }
    path = directory / "summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path


def _fmt(value: object, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def print_results(results: list[BenchResult]) -> None:
    """Per benchmark a table of its phases, then one table of every check."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 120))
    for result in results:
        if result.phases:
            table = Table(title=result.title)
            for column in ("phase", "requests", "errors", "req/s", "p50 ms", "p99 ms",
                           "server CPU ms/req", "client CPU ms/req", "server RSS MiB"):
                table.add_column(column, justify="left" if column == "phase" else "right")
            for p in result.phases:
                d = p.as_dict()
                table.add_row(p.name, str(p.requests), str(p.errors), _fmt(p.rps, 0),
                              _fmt(p.p_ms(50)), _fmt(p.p_ms(99)),
                              _fmt(d["server_cpu_ms_per_req"]), _fmt(d["client_cpu_ms_per_req"]),
                              " / ".join(f"{v:.0f}" for v in p.server_rss_mb) or "n/a")
            console.print(table)
        for note in result.notes:
            console.print(f"[yellow]note[/] ({result.name}): {note}")
        for problem in result.problems:
            console.print(f"[red]problem[/] ({result.name}): {problem}")
    table = Table(title="Issue 13 targets")
    for column in ("benchmark", "figure", "value", "target", "verdict"):
        table.add_column(column, justify="right" if column in ("value", "target") else "left")
    for result in results:
        for c in result.checks:
            colour = {"PASS": "green", "BELOW": "red"}.get(c.verdict, "yellow")
            target = ("" if c.target is None
                      else f"{'>=' if c.at_least else '<='} {c.target:g} {c.unit}")
            table.add_row(result.name, c.name, f"{_fmt(c.value)} {c.unit}", target,
                          f"[{colour}]{c.verdict}[/]")
    console.print(table)
