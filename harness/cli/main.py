"""The `scanpay` command line: a thin layer over functions the tests call too."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

import click
from alembic.util.exc import CommandError
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from harness.cli.certify import catalogue_command, certify_command
from harness.cli.load import load
from harness.cli.rotate import RotateOptions, run_rotator
from harness.cli.serve import ServeOptions, run_servers
from harness.embedded import embedded_sims
from harness.flow import FlowOptions, FlowResult, FlowTarget, render_result, run_flow
from simkit.settings import ConfigError
from simkit.startup_checks import driver_reason

console = Console(stderr=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scanpay-sim")
def main() -> None:
    """scanpay-sim: a simulator and test harness for Trustly Scan and Pay.

    `scanpay certify` runs the conformance catalogue against the embedded sims (the default),
    sims already running, or a partner's CMS, and writes the reports. `scanpay serve` runs
    both sims (Trustly: auth service, microsite, TPAS; the reference CMS) on this machine;
    `flow` pays once and prints the message sequence, `load` drives Locust against running
    sims, `rotate` keeps a served CMS's QR codes fresh, `catalogue` lists the scenarios.
    `scanpay COMMAND --help` explains each.
    """


@main.command()
@click.option("--trustly-port", default=8710, show_default=True, help="Port of sim_trustly.")
@click.option("--cms-port", default=8720, show_default=True, help="Port of sim_cms.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (0.0.0.0 to let phones on the LAN reach it).")
@click.option("--public-url", envvar="SCANPAY_TRUSTLY_PUBLIC_URL", default=None,
              help="Base URL phones use to reach sim_trustly (goes into every QR). "
                   "Default: http://HOST:TRUSTLY_PORT. [env: SCANPAY_TRUSTLY_PUBLIC_URL]")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("data"), show_default=True,
              help="Where the SQLite databases live when no database URL is given.")
@click.option("--trustly-db", envvar="SCANPAY_TRUSTLY_DATABASE_URL", default=None,
              help="sim_trustly's database URL (sqlite:///... or postgresql://...). "
                   "[env: SCANPAY_TRUSTLY_DATABASE_URL]")
@click.option("--cms-db", envvar="SCANPAY_CMS_DATABASE_URL", default=None,
              help="sim_cms's database URL. [env: SCANPAY_CMS_DATABASE_URL]")
@click.option("--config", "config_file", envvar="SCANPAY_CONFIG", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML configuration (merchants, keys, lifetimes). [env: SCANPAY_CONFIG]")
@click.option("--controllable-clock", is_flag=True, envvar="SCANPAY_CONTROLLABLE_CLOCK",
              help="Start with a manual clock that POST /_sim/clock moves (needs an admin "
                   "token). [env: SCANPAY_CONTROLLABLE_CLOCK]")
@click.option("--admin-token", envvar="SCANPAY_ADMIN_TOKEN", default=None,
              help="Enables the /_sim control API, taken as 'Authorization: Bearer TOKEN'. "
                   "[env: SCANPAY_ADMIN_TOKEN]")
def serve(**options: object) -> None:
    """Run the sims until interrupted (Ctrl-C) and print their URLs and demo credentials.

    Besides the variables of its flags, it reads SCANPAY_TRUSTLY_LOCKOUT_SCOPE (whom a
    failed-login lockout stops: source or access_id),
    SCANPAY_TRUSTLY_RELEASE_QR_ON_BANK_REFUSAL (true: a QR code whose payment the bank refused
    can be paid again; false: it stays used), and SCANPAY_CMS_TRUSTLY_URL and
    SCANPAY_TRUSTLY_CMS_URL (point the CMS at another Trustly, or TPAS at another CMS, than
    the one served beside it), as the sims do under any server.

    Exit code 2, with one paragraph saying what to change, when it cannot start: a database
    that does not open, is not SQLite or PostgreSQL, or is shared by both sims (or is the
    other sim's); a port in use; --controllable-clock without --admin-token.
    """
    opts = ServeOptions(**options)  # type: ignore[arg-type]
    try:
        run_servers(opts, console)
    except (ConfigError, ValueError) as exc:
        _cannot_start(str(exc))
    except (SQLAlchemyError, CommandError) as exc:  # what the start-up checks did not foresee
        _cannot_start(f"a database would not start: {driver_reason(exc)}. Check --trustly-db "
                      "and --cms-db (each sim needs a database of its own).")
    except OSError as exc:
        _cannot_start(f"{exc.strerror or exc}.")


def _cannot_start(message: str) -> NoReturn:
    """`scanpay serve`'s one paragraph for a start-up it refuses, and exit code 2."""
    console.print(f"[red]scanpay serve: cannot start:[/red] {escape(message)}", soft_wrap=True)
    sys.exit(2)


@main.command()
@click.option("--config", "config_file", envvar="SCANPAY_CONFIG", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML configuration of the CMS (EGMs, Trustly link). [env: SCANPAY_CONFIG]")
@click.option("--interval", "interval_s", type=float, default=1.0, show_default=True,
              help="Seconds between rotation passes.")
@click.option("--heartbeat", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File touched after every pass, for container health checks.")
def rotate(**options: object) -> None:
    """Rotate the EGMs' QR codes of a sim_cms served elsewhere (e.g. by gunicorn).

    Builds sim_cms from the same environment as `sim_cms.wsgi` (SCANPAY_CMS_DATABASE_URL,
    SCANPAY_CMS_TRUSTLY_URL, SCANPAY_CONFIG, SCANPAY_CONTROLLABLE_CLOCK), then asks Trustly
    for a new QR token for every EGM whose QR is due, printing a line per acquisition and
    per failure, until Ctrl-C or SIGTERM. `scanpay serve` needs no rotator: it rotates itself.
    """
    opts = RotateOptions(**options)  # type: ignore[arg-type]
    try:
        run_rotator(opts, Console(soft_wrap=True))
    except (ConfigError, ValueError) as exc:
        console.print(f"[red]scanpay rotate: cannot start:[/red] {exc}")
        sys.exit(2)
    except OperationalError as exc:
        console.print(f"[red]scanpay rotate: cannot reach the database:[/red] {exc.orig}")
        sys.exit(2)


@main.command()
@click.option("--trustly-url", default=None, metavar="URL",
              help="Base URL of a running sim_trustly (with --cms-url). Default: run both "
                   "sims in this process.")
@click.option("--cms-url", default=None, metavar="URL",
              help="Base URL of a running CMS (with --trustly-url).")
@click.option("--admin-token", envvar="SCANPAY_ADMIN_TOKEN", default=None,
              help="The running sims' admin token, to read their journals for the message "
                   "sequence (embedded sims make their own). [env: SCANPAY_ADMIN_TOKEN]")
@click.option("--egm", "egm_id", default="EGM-001", show_default=True, help="EGM to fund.")
@click.option("--amount", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Amount in minor units (2000 = $20.00).")
@click.option("--currency", default="USD", show_default=True)
@click.option("--username", default="demo-player", show_default=True,
              help="Demo bank username (the UBAI, hence the daily limit, follows it).")
@click.option("--password", default="demo-password", show_default=True,
              help="Demo bank password; a keyphrase forces an outcome (e.g. NotEnoughFunds).")
@click.option("--client-id", default="tpas-client", show_default=True,
              help="OAuth2 client the EGM uses at its CMS.")
@click.option("--client-secret", default="tpas-secret", show_default=True)
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=30.0,
              show_default=True, help="Seconds to wait for each answer.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("--browser", is_flag=True,
              help="Do it in a real headless Chromium: screenshot the EGM screen, decode its "
                   "QR from the pixels, pay on a phone-sized page by clicking, and wait for "
                   "the screen's meter. Needs Debian's chromium and chromium-driver.")
@click.option("--screenshots", type=click.Path(file_okay=False, path_type=Path),
              default=Path("reports/flow-browser"), show_default=True,
              help="With --browser: where the screenshots of each step go.")
@click.option("--chromium", "chromium_path", type=click.Path(dir_okay=False, path_type=Path),
              envvar="SCANPAY_CHROMIUM", default=Path("/usr/bin/chromium"), show_default=True,
              help="With --browser: the Chromium binary. [env: SCANPAY_CHROMIUM]")
@click.option("--chromedriver", "chromedriver_path",
              type=click.Path(dir_okay=False, path_type=Path), envvar="SCANPAY_CHROMEDRIVER",
              default=Path("/usr/bin/chromedriver"), show_default=True,
              help="With --browser: the chromedriver binary. [env: SCANPAY_CHROMEDRIVER]")
def flow(*, trustly_url: str | None, cms_url: str | None, admin_token: str | None,
         as_json: bool, browser: bool, screenshots: Path, chromium_path: Path,
         chromedriver_path: Path, **options: object) -> None:
    """Run one scan-then-pay and print the numbered message sequence and the EGM's meter.

    As the EGM, asks the CMS for a QR (POST /cws/v1/egms/EGM/qr); as the player's phone,
    opens the QR's url (GET /api/v1/scan/CODE) and pays at the demo bank (POST
    .../payments); then reads the EGM's meter. The sequence (CMS -> Trustly for the QR token,
    the phone's calls, TPAS -> CMS for OAuth, limits and funding) is rebuilt from both sims'
    journals, which needs the admin token. Exit code 0 when the payment is CREDITED, 1 when
    it is not, 2 when the sims cannot be reached.

    With --browser a headless Chromium does the same as a person would, with screenshots
    (embedded sims are then served on free 127.0.0.1 ports so the browser can open them).
    Exit code 0 when the EGM screen shows the credit, 1 when a step fails, 2 when the sims
    cannot be reached or Chromium/chromedriver is missing.
    """
    if (trustly_url is None) != (cms_url is None):
        raise click.UsageError("give both --trustly-url and --cms-url, or neither for "
                               "embedded sims")
    if browser:
        _flow_in_browser(trustly_url, cms_url, as_json=as_json, screenshots=screenshots,
                         binaries=(chromium_path, chromedriver_path), options=options)
    flow_options = FlowOptions(**options)  # type: ignore[arg-type]
    out = Console(soft_wrap=True)
    if trustly_url is not None and cms_url is not None:
        result = run_flow(FlowTarget.over_http(trustly_url, cms_url, admin_token), flow_options)
    else:
        with embedded_sims() as sims:
            result = run_flow(FlowTarget.in_process(sims), flow_options)
    _report_flow(out, result, as_json)


def _flow_in_browser(trustly_url: str | None, cms_url: str | None, *, as_json: bool,
                     screenshots: Path, binaries: tuple[Path, Path],
                     options: dict[str, object]) -> None:
    """`scanpay flow --browser`; Selenium is imported only here (the `browser` extra)."""
    try:
        from harness.browser.chromium import BrowserPaths
        from harness.browser.command import run_browser_command
        from harness.browser.flow import BrowserFlowOptions
    except ImportError as exc:
        console.print(f"[red]scanpay flow --browser needs Selenium:[/red] {exc}; "
                      "pip install 'scanpay-sim[browser]'")
        sys.exit(2)
    flow_options = BrowserFlowOptions(
        egm_id=str(options["egm_id"]), amount=int(str(options["amount"])),
        currency=str(options["currency"]), username=str(options["username"]),
        password=str(options["password"]), timeout_s=float(str(options["timeout_s"])),
        screenshots=screenshots)
    sys.exit(run_browser_command(trustly_url, cms_url, flow_options, BrowserPaths(*binaries),
                                 as_json))


def _report_flow(out: Console, result: FlowResult, as_json: bool) -> None:
    """Print the result (rich or JSON) and exit 2 if unreachable, 1 if not credited."""
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        render_result(out, result)
    if result.error is not None and result.error.unreachable:
        sys.exit(2)
    if not result.credited:
        sys.exit(1)


main.add_command(load)
main.add_command(certify_command)
main.add_command(catalogue_command)

# One line each in `scanpay --help` (click would cut the docstrings' first sentences short).
_SHORT_HELP = {
    "catalogue": "Print the conformance catalogue (a table, or Markdown).",
    "certify": "Run the conformance catalogue against a target; write reports.",
    "flow": "Run one scan-then-pay and print its message sequence.",
    "load": "Run Locust's casino-floor journeys headless against running sims.",
    "rotate": "Keep the QR codes of a sim_cms served elsewhere fresh.",
    "serve": "Run both sims on this machine until Ctrl-C.",
}
for _name, _text in _SHORT_HELP.items():
    main.commands[_name].short_help = _text

if __name__ == "__main__":  # pragma: no cover
    main()
