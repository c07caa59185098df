"""`scanpay --help`, the README and docs/ say the same things about the command line.

Two ways they drifted before: docs named flags a command does not have, and docs/operations.md
and `scanpay serve --help` disagreed about which environment variables `serve` reads. What
`serve` reads is taken from the code itself: the settings loaders are run on an environment
that records every name they look up.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner

from harness.cli.main import main
from sim_cms.settings import load_cms_settings
from sim_trustly.settings import load_trustly_settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "examples").rglob("*.md")), ROOT / "loadtests" / "README.md",
        ROOT / "bench" / "README.md"]
# `scanpay <command>` and what follows it on the line, up to where a shell or a table cell ends
INVOCATION = re.compile(r"scanpay ([a-z]+)((?: +[^`|;&#\n]*)?)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])\b")
SERVE_SENTENCE = re.compile(r"`scanpay serve` reads (?:these|the) (?:environment )?variables?"
                            r"[^.]*?:(.*?)\.(?:\s|$)", re.DOTALL)


class _Recording(dict[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return super().__contains__(key)


def _options(command: click.Command) -> Iterator[click.Option]:
    return (p for p in command.params if isinstance(p, click.Option))


def serve_variables_in_code() -> set[str]:
    """Every SCANPAY_* variable `scanpay serve` reads: its flags' and its settings loaders'."""
    names: set[str] = set()
    for option in _options(main.commands["serve"]):
        if option.envvar:
            names |= {option.envvar} if isinstance(option.envvar, str) else set(option.envvar)
    for load in (load_trustly_settings, load_cms_settings):
        recording = _Recording()
        load(environ=recording, database_url="sqlite://")
        names |= recording.asked
    return {name for name in names if name.startswith("SCANPAY_")}


def test_every_flag_the_docs_name_exists() -> None:
    flags = {name: {"--help", "-h"} | {opt for option in _options(command)
                                        for opt in (*option.opts, *option.secondary_opts)}
             for name, command in main.commands.items()}
    wrong = []
    for doc in DOCS:
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            for match in INVOCATION.finditer(line):
                command, rest = match.groups()
                if command not in flags:
                    continue  # prose ("the scanpay flows section"), not an invocation
                wrong += [f"{doc.relative_to(ROOT)}:{number}: scanpay {command} {flag}"
                          for flag in FLAG.findall(rest) if flag not in flags[command]]
    assert wrong == [], "docs name flags the CLI does not have"


def test_operations_and_serve_help_list_the_variables_serve_reads() -> None:
    in_code = serve_variables_in_code()
    assert {"SCANPAY_TRUSTLY_DATABASE_URL", "SCANPAY_ADMIN_TOKEN"} <= in_code  # sanity
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    sentence = SERVE_SENTENCE.search(operations)
    assert sentence is not None, "docs/operations.md must say which variables serve reads"
    assert set(re.findall(r"SCANPAY_[A-Z_]+", sentence.group(1))) == in_code
    shown = CliRunner().invoke(main, ["serve", "--help"], terminal_width=200).output
    missing = sorted(name for name in in_code if name not in shown)
    assert missing == [], "scanpay serve --help does not mention these variables"
