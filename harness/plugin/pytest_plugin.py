"""The scanpay pytest plugin: fixtures for a CMS vendor's own CI (installed with scanpay-sim).

Installing scanpay-sim (the wheel README.md's "Installing for partners" builds) registers it
(entry point `pytest11: scanpay`); nothing starts until a test asks for a fixture, so it
costs nothing in a suite that does not use it.

Options:
    --scanpay-target FILE      the target TOML (see examples/partner-target.toml); default:
                               both sims embedded in the test process. [env: SCANPAY_TARGET]
    --scanpay-report-dir DIR   write every flow a test ran as JSON (with the message
                               sequence on our sims) to DIR/<test>-<n>.json, and the
                               harness's own servers' log to DIR/harness-servers.log
                               (else to a session temp dir: never to the console).

Fixtures (all prefixed `scanpay_`):
    scanpay_target   session: the `harness.targets.Target`, brought up once, stopped at the end.
    scanpay_sims     session: the same target when it is our sims (embedded or local), else
                     the test is skipped; its control APIs move clocks and EGM states.
    scanpay_clean    per test: a reset through the control API when the target offers one,
                     and a fresh player (username, UBAI) either way (`kit.CleanState`).
    scanpay_flow     per test: `run(egm_id=, amount=, username=)` one scan-then-pay, with
                     the meter before and after and the payment's status (`FlowDriver`).
    scanpay_cms      session: the CMS's Funding and Daily Limits APIs as TPAS calls them.
    scanpay_trustly  session: Trustly's QR Code API as the merchant calls it (`TrustlyApi`):
                     `request_qr_token(body)`, `get`/`post`/`request`, with its Basic auth.

Marker: `@pytest.mark.sim_only(reason=...)` skips a test on a partner target, with the reason.
When a test that ran flows fails, its report gets a "scanpay flows" section with each flow's
steps, message sequence and meters.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Generator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the harness is imported only when a fixture is used
    from harness.clients.cms import CmsApi
    from harness.clients.http import Client
    from harness.clients.trustly import TrustlyApi
    from harness.plugin.kit import CleanState, FlowDriver, FlowRun
    from harness.targets import Target, TargetSpec

TARGET_ENV = "SCANPAY_TARGET"
SIM_KINDS = frozenset({"embedded", "local"})
_SPEC = pytest.StashKey["TargetSpec"]()
_RUNS = pytest.StashKey["list[FlowRun]"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """The plugin's two options, in their own group of `pytest --help`."""
    group = parser.getgroup("scanpay", "scanpay-sim (Trustly Scan and Pay harness)")
    group.addoption("--scanpay-target", metavar="FILE", default=os.environ.get(TARGET_ENV),
                    help="Target TOML (partner CMS or running sims); default: embedded sims. "
                         f"[env: {TARGET_ENV}]")
    group.addoption("--scanpay-report-dir", metavar="DIR", default=None,
                    help="Write each scanpay flow's result as JSON into DIR.")


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker; parse a given target file now, so a typo fails the run at once."""
    config.addinivalue_line("markers", "sim_only(reason=None): needs the simulators' own hooks; "
                                       "skipped on a partner target")
    path = config.getoption("scanpay_target", default=None)
    if path:
        from harness.targets import load_target
        from simkit.settings import ConfigError

        try:
            config.stash[_SPEC] = load_target(Path(path))
        except (ConfigError, OSError) as exc:
            raise pytest.UsageError(f"--scanpay-target {path}: {exc}") from exc


def _spec(config: pytest.Config) -> TargetSpec:
    """The run's target as configured (embedded when no file was given)."""
    if _SPEC not in config.stash:
        from harness.targets import embedded_spec

        config.stash[_SPEC] = embedded_spec()
    return config.stash[_SPEC]


@pytest.hookimpl(tryfirst=True)  # before the fixtures: a skipped test starts no target
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip `sim_only` tests on a partner target, saying which target and why."""
    marker = item.get_closest_marker("sim_only")
    if marker is None:
        return
    spec = _spec(item.config)
    if spec.kind not in SIM_KINDS:
        why = marker.kwargs.get("reason") or (marker.args[0] if marker.args else None)
        pytest.skip(f"sim_only: {why or 'needs the simulators'}; the target "
                    f"{spec.name!r} is a partner system")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None],
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failed test that ran flows, attach what each flow did to its report."""
    report = yield
    runs = item.stash.get(_RUNS, None)
    if runs and report.failed and call.when == "call":
        report.sections.append(("scanpay flows", _describe_runs(runs)))
    return report


def _describe_runs(runs: list[FlowRun]) -> str:
    from rich.console import Console

    from harness.flow import render_result

    out = io.StringIO()
    console = Console(file=out, width=110, no_color=True, force_terminal=False)
    for number, run in enumerate(runs, 1):
        console.print(f"flow {number}: {run.amount} on {run.egm_id} as {run.username}")
        render_result(console, run.result)
    return out.getvalue()


@pytest.fixture(scope="session")
def scanpay_target(pytestconfig: pytest.Config,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """The system under test, brought up for the session (embedded sims by default).

    The preflight runs first (`harness.certify.preflight`): a target that cannot be used fails each
    test that needs it with the one-paragraph diagnosis, not a traceback. The harness's own
    servers log into `--scanpay-report-dir` (else a session temp dir), not the console.
    """
    from harness.server_logs import SERVER_LOG, server_logs_to
    from harness.targets import TargetError, open_target

    spec = _spec(pytestconfig)
    report_dir = pytestconfig.getoption("scanpay_report_dir")
    logs = Path(report_dir) if report_dir else tmp_path_factory.mktemp("scanpay")
    with ExitStack() as stack:
        stack.enter_context(server_logs_to(logs / SERVER_LOG, root=False))
        try:
            target = stack.enter_context(open_target(spec))
        except TargetError as exc:
            pytest.fail(f"scanpay target {spec.name!r} cannot be used: {exc}", pytrace=False)
        yield target


@pytest.fixture(scope="session")
def scanpay_sims(scanpay_target: Target) -> Target:
    """The target when it is our simulators (embedded or local); skips on a partner target."""
    if scanpay_target.kind not in SIM_KINDS:
        pytest.skip(f"needs the simulators; the target {scanpay_target.name!r} is a partner "
                    "system")
    return scanpay_target


@pytest.fixture(scope="session")
def _scanpay_cms_http(scanpay_target: Target) -> Iterator[Client]:
    with scanpay_target.cms_client() as client:
        yield client


@pytest.fixture(scope="session")
def scanpay_cms(scanpay_target: Target, _scanpay_cms_http: Client) -> CmsApi:
    """The CMS's Funding and Daily Limits APIs with TPAS's credentials, limits changed with
    the target's limits credentials (session-wide, so Hypothesis tests may use it)."""
    from harness.clients.cms import CmsApi

    return CmsApi(scanpay_target, _scanpay_cms_http)


@pytest.fixture(scope="session")
def scanpay_trustly(scanpay_target: Target) -> Iterator[TrustlyApi]:
    """Trustly's QR Code API as the target's merchant calls it (`request_qr_token(body)`),
    and any other call to that Trustly with the merchant's Basic credentials (`get`, `post`,
    `request`): the harness's own Trustly client, the one certify's scan scenarios use."""
    from harness.clients.trustly import TrustlyApi

    with scanpay_target.trustly_client() as client:
        yield TrustlyApi(client, merchant=scanpay_target.merchant)


@pytest.fixture
def scanpay_clean(scanpay_target: Target) -> CleanState:
    """A clean start for one test: reset when the target offers it, a fresh player always."""
    from harness.plugin.kit import new_clean_state

    return new_clean_state(scanpay_target)


@pytest.fixture
def scanpay_flow(request: pytest.FixtureRequest, scanpay_target: Target,
                 scanpay_clean: CleanState, scanpay_cms: CmsApi) -> FlowDriver:
    """Scan-then-pay runs for one test; their results go into the report if it fails."""
    from harness.plugin.kit import FlowDriver

    driver = FlowDriver(scanpay_target, scanpay_clean, scanpay_cms)
    request.node.stash[_RUNS] = driver.runs
    report_dir = request.config.getoption("scanpay_report_dir")
    if report_dir:
        request.addfinalizer(lambda: _write_runs(Path(report_dir), request.node.nodeid,
                                                 driver.runs))
    return driver


def _write_runs(directory: Path, nodeid: str, runs: list[FlowRun]) -> None:
    """One JSON file per flow, named after the test."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]
    for number, run in enumerate(runs, 1):
        document = {"test": nodeid, "amount": run.amount, "username": run.username,
                    **run.result.to_json()}
        (directory / f"{stem}-{number}.json").write_text(json.dumps(document, indent=2))
