"""Locust event hooks: options, a fail-fast reach check, the run id, the live line, the
workers' reports and the business gates at stop.

Roles: the master (or the single process of a local run) checks the targets, names the run,
prints the live line and judges the gates; a worker only runs users and sends its tally to
the master when it stops. The verdict sets Locust's exit code: 0 when every gate holds, 1
otherwise, 2 when the run could not start.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
from base import LoadSettings, add_options, parse_shares
from floor import TALLY, worker_index
from gates import ControlApi, Step, Thresholds, judge_steps, parse_step_p95, reconcile
from live import start_live_line
from locust import events
from locust import stats as locust_stats
from locust.runners import STATE_INIT, MasterRunner, WorkerRunner
from waiting import poll_until

REPORT = "scanpay_floor_report"
DRAIN = "scanpay_drain"
DRAIN_MARGIN_S = 30.0  # beyond --stop-timeout, for the workers' last journeys and reports
DRAIN_POLL_S = 0.2  # how often the master counts the reports in
REACH_TIMEOUT_S = 5.0


@dataclass
class RunState:
    """What the master keeps between test start and stop."""

    since: tuple[str, str] | None = None
    reports: dict[int, dict[str, Any]] = field(default_factory=dict)
    live: Any = None
    note: str = ""
    environment: Any = None  # the master's (or single process's), for the summary at quit


STATE = RunState()


def _is_worker(environment: Any) -> bool:
    return isinstance(environment.runner, WorkerRunner)


def _settings(environment: Any) -> LoadSettings:
    return LoadSettings.of(environment.parsed_options, environment.host or "")


def _stop(message: str) -> None:
    """End the process before any user runs: one clear line, exit code 2."""
    sys.stderr.write(f"scanpay load: {message}\n")
    sys.stderr.flush()
    raise SystemExit(2)


def unreachable(url: str) -> str | None:
    """Why `url` cannot be reached (no HTTP answer at all), or None when it answers."""
    try:
        requests.get(url, timeout=REACH_TIMEOUT_S)
    except requests.ConnectionError as exc:
        reason = str(exc.args[0] if exc.args else exc)
        return "connection refused" if "refused" in reason.casefold() else reason[:200]
    except requests.RequestException as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def _options(parser: Any, **_: Any) -> None:
    add_options(parser)


@events.init.add_listener  # type: ignore[untyped-decorator]
def _on_init(environment: Any, **_: Any) -> None:
    options = environment.parsed_options
    if _is_worker(environment):
        environment.runner.register_message(DRAIN, _on_drain)
        return  # a worker gets its options from the master with each spawn
    if options is None:
        return
    STATE.environment = environment
    try:
        parse_shares(options.amounts, "--amounts")
        parse_shares(options.bank_outcomes, "--bank-outcomes")
        parse_step_p95(options.step_p95)
    except ValueError as exc:
        _stop(str(exc))
    options.run_id = options.run_id or f"L{uuid.uuid4().hex[:8]}"
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message(REPORT, _on_report)
    if options.headless:
        settings = _settings(environment)
        for what, url in (("Trustly", settings.trustly_url), ("the CMS", settings.cms_url)):
            why = unreachable(url + "/openapi.json") if url else "no URL given"
            if why:
                _stop(f"cannot reach {what} at {url or '(none)'}: {why}. Nothing was run.")


def _on_report(environment: Any, msg: Any, **_: Any) -> None:
    report = dict(msg.data)
    STATE.reports[int(report["worker"])] = report


def _on_drain(environment: Any, **_: Any) -> None:
    """A worker told by its master to stop now: its users finish (within --stop-timeout)
    and its test_stop sends the last statistics and the tally."""
    environment.runner.stop()
    environment.runner.worker_state = STATE_INIT  # what Locust's own stop leaves behind


@events.test_stopping.add_listener  # type: ignore[untyped-decorator]
def _on_test_stopping(environment: Any, **_: Any) -> None:
    """On the master: stop the workers and wait for their reports before the gates judge.

    Locust's headless `--run-time` ends with `quit`, which judges before the workers have
    stopped (their last journeys and statistics would be lost), so the master drains first.
    """
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        return
    expected = len(runner.clients.all)
    runner.send_message(DRAIN)
    poll_until(lambda: True if len(STATE.reports) >= expected else None,
               timeout_s=float(environment.stop_timeout or 0) + DRAIN_MARGIN_S,
               interval_s=DRAIN_POLL_S)


@events.test_start.add_listener  # type: ignore[untyped-decorator]
def _on_test_start(environment: Any, **_: Any) -> None:
    TALLY.reset()
    if _is_worker(environment):
        return
    STATE.reports.clear()
    STATE.since, STATE.note = None, ""
    settings = _settings(environment)
    if settings.admin_token:
        try:
            STATE.since = ControlApi(settings.trustly_url, settings.cms_url,
                                     settings.admin_token).clocks()
        except (requests.RequestException, ValueError, KeyError) as exc:
            STATE.note = f"the control API did not answer at start: {exc}"
    options = environment.parsed_options
    STATE.live = start_live_line(environment, float(getattr(options, "live_interval", 0) or 0))


@events.test_stop.add_listener  # type: ignore[untyped-decorator]
def _on_test_stop(environment: Any, **_: Any) -> None:
    if _is_worker(environment):
        send_stats = getattr(environment.runner, "_send_stats", None)
        if send_stats is not None:
            send_stats()  # the last samples, before the master judges them
        environment.runner.send_message(REPORT, TALLY.report(worker_index(environment)))
        return
    if STATE.live is not None:
        STATE.live.kill(block=True)
        STATE.live = None
    if not isinstance(environment.runner, MasterRunner):
        STATE.reports[0] = TALLY.report(0)
    lines, failed = judge(environment)
    verdict = "PASS" if not failed else f"FAIL ({len(failed)} gate(s) failed)"
    out = ["", f"== scanpay load: run {environment.parsed_options.run_id} =="]
    out += [*lines, f"result: {verdict}", ""]
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
    environment.process_exit_code = 1 if failed else 0


@events.quit.add_listener  # type: ignore[untyped-decorator]
def _on_quit(**_: Any) -> None:
    """Print Locust's summary tables when `--json-file` made Locust skip them.

    Locust prints either the summary or, with `--json-file`, nothing (it writes the file
    instead); `scanpay load --stats-file` promises both, as does a hand-run `--json-file`.
    """
    environment = STATE.environment
    options = getattr(environment, "parsed_options", None)
    if environment is None or not getattr(options, "json_file", None):
        return
    stats = environment.runner.stats
    locust_stats.print_stats(stats, current=False)
    locust_stats.print_percentile_stats(stats)
    locust_stats.print_error_report(stats)


def judge(environment: Any) -> tuple[list[str], list[str]]:
    """The summary lines and the failed gates of the run that just stopped."""
    options = environment.parsed_options
    thresholds = Thresholds(float(options.max_error_share), float(options.max_p95_ms),
                            parse_step_p95(options.step_p95))
    steps = [Step(e.name, e.num_requests, e.num_failures,
                  float(e.get_response_time_percentile(0.95) or 0))
             for e in environment.stats.entries.values()]
    passed, failed = judge_steps(steps, thresholds)
    if environment.runner.exceptions:
        failed.append(f"{len(environment.runner.exceptions)} exception(s) in the locustfile")
    lines = ["workers"] + [_worker_line(report) for _, report in sorted(STATE.reports.items())]
    lines += ["reconciliation"] + [f"  {line}" for line in _reconcile(environment, failed)]
    lines += ["gates"] + [f"  PASS {line}" for line in passed]
    return lines + [f"  FAIL {line}" for line in failed], failed


def _worker_line(report: dict[str, Any]) -> str:
    outcomes = ", ".join(f"{n} {status}" for status, n in sorted(report["outcomes"].items()))
    return (f"  worker {report['worker']}: {report['players']} players, {report['ops']} ops, "
            f"payments: {outcomes or 'none'}; replays refused {report['replaysRefused']}")


def _reconcile(environment: Any, failed: list[str]) -> list[str]:
    """Reconcile through the control APIs; a mismatch or an unreadable side fails the gate."""
    settings = _settings(environment)
    if not settings.admin_token:
        return ["skipped: no admin token (give --admin-token to reconcile)"]
    if STATE.since is None:
        failed.append(f"reconciliation: {STATE.note or 'no start time'}")
        return [STATE.note]
    reports = list(STATE.reports.values())
    try:
        records = ControlApi(settings.trustly_url, settings.cms_url, settings.admin_token) \
            .settled_records(f"{settings.run_id}-", STATE.since,
                             float(environment.parsed_options.settle_timeout))
    except (requests.RequestException, ValueError, KeyError) as exc:
        failed.append(f"reconciliation: the control API failed: {exc}")
        return [f"the control API failed: {exc}"]
    result = reconcile(*records, observed_credited=[i for r in reports for i in r["creditedIds"]],
                       replays_accepted=sum(r["replaysAccepted"] for r in reports))
    if not result.exact:
        failed.append(f"reconciliation: {len(result.problems)} problem(s)")
    return result.lines()
