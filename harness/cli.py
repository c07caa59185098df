"""The `scanpay` command line: a thin layer over functions the tests call too."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from sqlalchemy.exc import OperationalError

from harness.rotate import RotateOptions, run_rotator
from harness.serve import ServeOptions, run_servers
from simkit.settings import ConfigError

console = Console(stderr=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scanpay-sim")
def main() -> None:
    """scanpay-sim: a simulator and test harness for Trustly Scan and Pay.

    `scanpay serve` runs the simulated Trustly auth service (and, as it grows, the reference
    CMS) on this machine so a casino system can be tested against it.
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
    """Run the sims until interrupted (Ctrl-C) and print their URLs and demo credentials."""
    opts = ServeOptions(**options)  # type: ignore[arg-type]
    try:
        run_servers(opts, console)
    except (ConfigError, ValueError) as exc:
        console.print(f"[red]scanpay serve: cannot start:[/red] {exc}")
        sys.exit(2)
    except OSError as exc:
        console.print(f"[red]scanpay serve: cannot listen:[/red] {exc}")
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


if __name__ == "__main__":  # pragma: no cover
    main()
