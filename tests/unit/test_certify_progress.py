"""On a terminal, certify shows a progress bar with the running scenario; in a log, nothing."""

from __future__ import annotations

import io

from rich.console import Console

from harness.certify.results import ScenarioResult
from harness.certify.runner import live_bar
from harness.certify.scenarios import CATALOGUE


def _result(item_id: str) -> ScenarioResult:
    return ScenarioResult(item_id, "t", "r", (), "passed", 0.1)


def _drive(console: Console) -> None:
    first, second = CATALOGUE[0], CATALOGUE[1]
    with live_bar(console, total=2) as bar:
        bar.start(first)
        console.print("a scenario line")
        bar.advance(_result(first.id))
        bar.start(second)
        bar.advance(_result(second.id))


def test_a_terminal_sees_the_bar_and_the_running_scenario() -> None:
    out = io.StringIO()
    _drive(Console(file=out, force_terminal=True, width=120))
    shown = out.getvalue()
    assert "certify" in shown and "/2" in shown  # the bar, counting
    assert CATALOGUE[0].id in shown or CATALOGUE[1].id in shown  # the running scenario
    assert "a scenario line" in shown


def test_a_log_gets_only_the_lines() -> None:
    out = io.StringIO()
    _drive(Console(file=out, force_terminal=False, width=120))
    assert out.getvalue() == "a scenario line\n"
