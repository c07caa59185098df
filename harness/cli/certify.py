"""The `scanpay certify` and `scanpay catalogue` commands (click), over `harness.certify.runner`."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from harness.certify.runner import CertifyOptions, certify
from harness.certify.scenarios import CATALOGUE
from harness.certify.scenarios.docs import render_markdown
from harness.target_config import local_spec
from simkit.settings import ConfigError


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def print_catalogue(console: Console) -> None:
    """The catalogue as a table: id, title, tags, needs."""
    table = Table(title=f"Conformance catalogue ({len(CATALOGUE)} scenarios)",
                  title_justify="left")
    for column in ("ID", "Title", "Tags", "Needs"):
        table.add_column(column, overflow="fold")
    for item in CATALOGUE:
        table.add_row(item.id, item.title, ", ".join(item.tags), ", ".join(item.needs) or "-")
    console.print(table)


@click.command(name="certify")
@click.option("--target", "target_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="FILE",
              help="Target TOML (kind = \"partner\" or \"local\"; see docs/conformance.md). "
                   "Default: both sims embedded in this process.")
@click.option("--trustly-url", default=None, metavar="URL",
              help="A running sim_trustly (local target, with --cms-url and --admin-token).")
@click.option("--cms-url", default=None, metavar="URL", help="A running sim_cms (local target).")
@click.option("--admin-token", envvar="SCANPAY_ADMIN_TOKEN", default=None,
              help="The running sims' admin token (local target). [env: SCANPAY_ADMIN_TOKEN]")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("reports"), show_default=True,
              help="Where report.json, junit.xml, report.html, report.txt and "
                   "harness-servers.log are written.")
@click.option("--only", multiple=True, metavar="ID,...",
              help="Run only these scenario ids (comma-separated, repeatable).")
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="Run only scenarios carrying this tag (repeatable: all must match).")
@click.option("--list", "list_only", is_flag=True, help="Print the catalogue and exit.")
def certify_command(  # noqa: PLR0917 - click passes every option
    target_file: Path | None, trustly_url: str | None, cms_url: str | None,
    admin_token: str | None, report_dir: Path, only: tuple[str, ...], tags: tuple[str, ...],
    list_only: bool,
) -> None:
    """Run the conformance catalogue against a target and write the reports.

    \b
    Targets:
      (none)              both sims embedded in this process, each on its own manual clock
      --trustly-url/--cms-url/--admin-token
                          sims already running, e.g. `scanpay serve --controllable-clock
                          --admin-token T` (a TOML with kind = "local" says the same)
      --target FILE       a partner's CMS (TOML): the harness plays Trustly (its own
                          sim_trustly on the host/port the file names) and the player
    Scenarios that need a hook the target does not offer (egm-state, clock, faults,
    journal, fundings, qr-rotate) are skipped with the reason, never passed.

    Before any scenario a preflight checks the target: the CMS answers, its auth works,
    its EGMs and declared hooks answer, its QR comes from the harness's Trustly, the
    harness's port is free. If not, the run stops with one paragraph saying why.

    \b
    Outputs: one line per scenario, a summary table, the verdict, the wall time, and
    report.json, junit.xml, report.html and report.txt in --report-dir, with
    harness-servers.log (the harness's own servers' logs, kept off the console).
    This is a dry run against scanpay-sim's model of Trustly, not a Trustly certification.

    \b
    Exit codes (the verdict):
      0  PASSED      every scenario ran and passed
      1  FAILED      a scenario failed or errored
      2  ERROR       usage error, bad target file, or the preflight failed: the target
                     or the harness cannot run (no scenario ran)
      3  INCOMPLETE  nothing failed, but scenarios were skipped (untested: not a pass)
    """
    console = Console(soft_wrap=True)
    if list_only:
        print_catalogue(console)
        return
    spec = None
    if trustly_url or cms_url:
        if not (trustly_url and cms_url and admin_token) or target_file:
            raise click.UsageError("a local target needs --trustly-url, --cms-url and "
                                   "--admin-token (and no --target)")
        try:
            spec = local_spec(trustly_url, cms_url, admin_token)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from exc
    options = CertifyOptions(target_file=target_file, report_dir=report_dir,
                             only=_split(only), tags=_split(tags))
    sys.exit(certify(options, console, spec=spec))


@click.command(name="catalogue")
@click.option("--markdown", is_flag=True,
              help="Print docs/conformance.md (generated from the catalogue).")
def catalogue_command(markdown: bool) -> None:
    """Print the conformance catalogue (a table, or docs/conformance.md's Markdown)."""
    if markdown:
        click.echo(render_markdown(), nl=False)
        return
    print_catalogue(Console(soft_wrap=True))
