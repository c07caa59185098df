"""`scanpay certify --help` tells a partner's CI what each exit code means."""

from __future__ import annotations

from click.testing import CliRunner

from harness.certify.results import EXIT_CODES
from harness.cli.certify import certify_command


def test_help_explains_every_exit_code_and_the_dry_run() -> None:
    shown = CliRunner().invoke(certify_command, ["--help"])
    assert shown.exit_code == 0
    lines = [" ".join(line.split()) for line in shown.output.splitlines()]
    for verdict, code in EXIT_CODES.items():
        assert any(line.startswith(f"{code} {verdict} ") for line in lines), (verdict, lines)
    assert "not a Trustly certification" in " ".join(lines)
