"""`scanpay certify`: run the conformance catalogue against a target and judge each scenario.

`run_catalogue` runs scenarios one after the other against an open `Target` and returns the
`RunResult` the reports are drawn from. A scenario's outcome is decided here, never by the
scenario: *skipped* when the target lacks a hook it needs (or it raised `ScenarioSkipped`),
*failed* when any of its checks failed, *error* when it raised anything else (the run goes
on), *passed* otherwise, and only if it recorded at least one check.

A failed scenario's reason is its most important failed check (`harness.certify.results.headline`:
money checks before protocol checks), as `description: expected X, observed Y`.

`certify` is the command's body: load and open the target (which runs the preflight), run,
print, write the reports, and return the exit code of the run's verdict
(`harness.certify.results.EXIT_CODES`): 0 PASSED (every scenario ran and passed), 1 FAILED (any
failure or error), 2 the target or the harness cannot run (usage, target file, preflight:
one paragraph of diagnosis, no scenario run), 3 INCOMPLETE (nothing failed, but scenarios
were skipped). The harness's own servers log into the report directory, not the console.
"""

from __future__ import annotations

import secrets
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

from harness.certify.results import EXIT_CODES, Check, RunResult, ScenarioResult, headline
from harness.certify.scenarios import UnknownScenario, select
from harness.certify.scenarios.context import Context, RunState
from harness.certify.scenarios.model import CheckFailed, Scenario, ScenarioSkipped
from harness.sequence.recorder import SequenceRecorder, target_secrets
from harness.server_logs import SERVER_LOG, server_logs_to
from harness.targets import Target, TargetError, TargetSpec, load_target, open_target
from simkit.clock import format_instant, monotonic, system_now
from simkit.settings import ConfigError

Progress = Callable[[ScenarioResult], None]
STYLES = {"passed": "green", "failed": "bold red", "error": "bold magenta", "skipped": "yellow"}


@dataclass(frozen=True)
class CertifyOptions:
    """The flags of `scanpay certify`."""

    target_file: Path | None = None
    report_dir: Path = Path("reports")
    only: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


def _first_failure(checks: Sequence[Check]) -> str:
    failed = headline(checks)
    return failed.summary() if failed is not None else "failed"


def _judge(ctx: Context, raised: BaseException | None) -> tuple[str, str]:
    """(outcome, reason) from what the scenario recorded and raised."""
    if isinstance(raised, ScenarioSkipped):
        return "skipped", str(raised)
    if raised is not None and not isinstance(raised, CheckFailed):
        where = traceback.extract_tb(raised.__traceback__)[-1]
        return "error", (f"{type(raised).__name__}: {raised} "
                         f"({Path(where.filename).name}:{where.lineno})")
    if any(not check.passed for check in ctx.checks):
        return "failed", _first_failure(ctx.checks)
    if not ctx.checks:
        return "error", "the scenario recorded no checks"
    return "passed", ""


def run_scenario(target: Target, item: Scenario, run: RunState) -> ScenarioResult:
    """Run one scenario against `target` and judge it (never raises for the scenario's sake)."""
    def result(outcome: str, reason: str, duration: float, **more: object) -> ScenarioResult:
        return ScenarioResult(id=item.id, title=item.title, requirement=item.requirement,
                              tags=item.tags, outcome=outcome,  # type: ignore[arg-type]
                              duration_s=duration, reason=reason, **more)  # type: ignore[arg-type]

    missing = target.missing(item.needs)
    if missing:
        return result("skipped", f"needs the {', '.join(missing)} hook(s), which this target "
                      "does not offer", 0.0)
    recorder = SequenceRecorder(target)
    ctx = Context(target, run, item.id, on_request=recorder.mark)
    started = monotonic()
    raised: BaseException | None = None
    try:
        item.run(ctx)
    except Exception as exc:  # a scenario's crash is its own outcome, not the run's
        raised = exc
    finally:
        ctx.close()
    duration = monotonic() - started
    outcome, reason = _judge(ctx, raised)
    sequence = recorder.sequence(ctx.correlation_id, target_secrets(target) | ctx.secrets)
    recorder.close()
    return result(outcome, reason, duration, checks=ctx.checks, sequence=sequence,
                  sequence_note=recorder.note)


def run_catalogue(target: Target, scenarios: Sequence[Scenario],
                  progress: Progress | None = None,
                  starting: Callable[[Scenario], None] | None = None) -> RunResult:
    """Run `scenarios` in order against `target`; `starting` hears of each scenario before it
    runs, `progress` sees each result as it comes."""
    state = RunState(secrets.token_hex(3), since=format_instant(target.earliest_now()))
    run = RunResult(target=target.name, target_kind=target.kind,
                    started_at=format_instant(system_now()), duration_s=0.0)
    started = monotonic()
    for item in scenarios:
        if starting is not None:
            starting(item)
        outcome = run_scenario(target, item, state)
        run.scenarios.append(outcome)
        if progress is not None:
            progress(outcome)
    run.duration_s = monotonic() - started
    run.clock_moved_s = target.clock_moved_s
    return run


def progress_line(console: Console) -> Progress:
    """One line per scenario: id, outcome, time, title (and why, if it did not pass)."""
    def show(result: ScenarioResult) -> None:
        line = Text(f"{result.id:<9} ")
        line.append(f"{result.outcome.upper():<8}", style=STYLES.get(result.outcome, ""))
        line.append(f"{result.duration_s:6.2f} s  {result.title}")
        if result.reason:
            line.append(f"\n          {result.reason[:300]}", style="dim")
        console.print(line)
    return show


class _Bar:
    """A progress bar under the scenario lines: how many ran, and which one is running.

    Only on a terminal: in CI logs and pipes the lines alone are printed, as before.
    """

    def __init__(self, console: Console, total: int) -> None:
        self._progress: RichProgress | None = None
        if console.is_terminal:
            self._progress = RichProgress(
                TextColumn("[bold]certify"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("{task.description}"),
                console=console, transient=True)
            self._task = self._progress.add_task("", total=total)

    def __enter__(self) -> _Bar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start(self, item: Scenario) -> None:
        """Show the scenario now running."""
        if self._progress is not None:
            self._progress.update(self._task, description=f"{item.id} {item.title[:50]}")

    def advance(self, _result: ScenarioResult) -> None:
        """Count one more scenario done."""
        if self._progress is not None:
            self._progress.advance(self._task)


def live_bar(console: Console, total: int) -> _Bar:
    """The progress bar of a run of `total` scenarios (nothing when not on a terminal)."""
    return _Bar(console, total)


def _run(spec: TargetSpec, scenarios: Sequence[Scenario], console: Console) -> RunResult:
    """Open the target (the preflight runs there) and run; a target that cannot be used
    gives a run of no scenarios with the diagnosis (verdict ERROR)."""
    try:
        with open_target(spec) as target:
            hooks = ", ".join(sorted(target.hooks)) or "none"
            console.print(Text(f"Certifying {target.name} ({target.kind}): "
                               f"{len(scenarios)} scenario(s); hooks: {hooks}"))
            console.print(Text(f"Preflight passed: {'; '.join(target.preflight)}", "dim"))
            with live_bar(console, len(scenarios)) as bar:
                show = progress_line(console)

                def done(result: ScenarioResult) -> None:
                    show(result)
                    bar.advance(result)

                return run_catalogue(target, scenarios, done, starting=bar.start)
    except TargetError as exc:
        return RunResult(target=spec.name, target_kind=spec.kind,
                         started_at=format_instant(system_now()), duration_s=0.0,
                         diagnosis=str(exc))


def certify(options: CertifyOptions, console: Console, *,
            spec: TargetSpec | None = None) -> int:
    """Run the command; returns its exit code (see the module docstring)."""
    from harness.report.writers import render_summary, write_reports

    usage = EXIT_CODES["ERROR"]
    try:
        scenarios = select(options.only, options.tags)
        spec = spec if spec is not None else load_target(options.target_file)
    except (ConfigError, UnknownScenario) as exc:
        console.print(Text.assemble(("scanpay certify: ", "red"), str(exc)))
        return usage
    if not scenarios:
        console.print("[red]scanpay certify:[/red] no scenario matches --only/--tag")
        return usage
    started = monotonic()
    try:
        options.report_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        console.print(Text.assemble(("scanpay certify: ", "red"),
                                    f"cannot write reports into {options.report_dir}: {exc}"))
        return usage
    with server_logs_to(options.report_dir / SERVER_LOG) as log:
        run = _run(spec, scenarios, console)
    run.server_log = str(log)
    render_summary(console, run)
    paths = write_reports(run, options.report_dir)
    console.print(f"Reports: {paths.json}  {paths.junit}  {paths.html}  {paths.text}")
    console.print(f"Wall time: {monotonic() - started:.2f} s")
    return run.exit_code
