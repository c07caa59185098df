"""`scanpay --help` names every command with a whole sentence, never one cut short."""

from __future__ import annotations

from click.testing import CliRunner

from harness.cli.main import main


def test_the_top_help_lists_every_command_whole() -> None:
    shown = CliRunner().invoke(main, ["--help"], terminal_width=80)
    assert shown.exit_code == 0, shown.output
    commands = shown.output.split("Commands:", 1)[1].strip().splitlines()
    names = [line.split()[0] for line in commands]
    assert sorted(names) == sorted(main.commands)
    for line in commands:
        assert not line.rstrip().endswith("..."), line  # click cuts long first sentences
        assert line.rstrip().endswith("."), line
    assert "as it grows" not in shown.output
    for name in main.commands:  # the introduction says what each command is for
        assert f"`{name}`" in shown.output or f"`scanpay {name}`" in shown.output, name
