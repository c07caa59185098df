"""Shipped text cites docs/architecture.md, by sections that exist, and nothing unshipped.

The architecture document is the project's own; citations of it read
"docs/architecture.md §N (Title)" (or link to `architecture.md#<n>-<title>`), and this test
fails when N is no section or the section is no longer called that, so renumbering or
renaming a section cannot leave a citation pointing at the wrong text. It also fails when
any shipped file cites a design document outside the repository, which readers cannot open.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARCHITECTURE = REPO / "docs" / "architecture.md"

# Everything a user or contributor reads: the packages, docs, examples, tests and tooling.
SHIPPED_ROOTS = ("simkit", "sim_trustly", "sim_cms", "harness", "docs", "examples", "tests",
                 "bench", "loadtests", "docker")
SHIPPED_FILES = ("README.md", "pyproject.toml", "Makefile", "Dockerfile", "docker-compose.yml")
TEXT_SUFFIXES = frozenset({".py", ".md", ".html", ".json", ".toml", ".yml", ".yaml", ".txt",
                           ".sql", ".cfg", ".ini", ".js", ".css", ".sh", ".j2"})
SKIPPED_DIRS = frozenset({"__pycache__", "results"})

# The private design document's name, spelled so that this file does not match itself.
UNSHIPPED = re.compile("|".join((r"\b" + "DES" + r"IGN\b", r"(?i:\bdesign\s*§)",
                                 r"(?i:\bdesign\s+card)")))
HEADING = re.compile(r"^## (\d+)\. (.+)$", re.MULTILINE)
CITATION = re.compile(r"architecture\.md\s+§(\d+)(?:\s+\(([^)]*)\))?")
INTERNAL = re.compile(r"(?<!RFC \d{4} )§(\d+)\s+\(([^)]*)\)")
# A title wrapped over lines or split over Python string literals ("(QR "\n "Code API)").
LITERAL_JOIN = re.compile(r"\"\s+f?\"")
LINK = re.compile(r"architecture\.md#([\w-]+)")


def shipped_files() -> Iterator[Path]:
    """Every text file of the shipped tree (no virtualenv, caches, build or run output)."""
    for name in SHIPPED_FILES:
        if (REPO / name).is_file():
            yield REPO / name
    for root in SHIPPED_ROOTS:
        for path in sorted((REPO / root).rglob("*")):
            parts = set(path.relative_to(REPO).parts)
            if (path.is_file() and path.suffix in TEXT_SUFFIXES
                    and not parts & SKIPPED_DIRS
                    and not any(p.startswith(".") for p in parts)):
                yield path


def sections() -> dict[str, str]:
    """The numbered sections of docs/architecture.md: number -> title."""
    return dict(HEADING.findall(ARCHITECTURE.read_text(encoding="utf-8")))


def anchor(number: str, title: str) -> str:
    """GitHub's anchor of the heading `## N. Title`."""
    text = f"{number}. {title}".lower()
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def title_text(raw: str | None) -> str | None:
    """A cited title as a reader sees it: string-literal joins and line breaks undone."""
    return None if raw is None else " ".join(LITERAL_JOIN.sub("", raw).split())


def citations() -> Iterator[tuple[str, str, str | None]]:
    """(file, section number, cited title or None) of every citation in the shipped tree."""
    for path in shipped_files():
        text = LITERAL_JOIN.sub("", path.read_text(encoding="utf-8", errors="replace"))
        where = str(path.relative_to(REPO))
        for match in CITATION.finditer(text):
            yield where, match.group(1), title_text(match.group(2))
        if path == ARCHITECTURE:
            for match in INTERNAL.finditer(text):
                yield where, match.group(1), title_text(match.group(2))


def test_the_shipped_tree_cites_no_design_document_outside_the_repository() -> None:
    found = [f"{path.relative_to(REPO)}:{n}: {line.strip()}"
             for path in shipped_files()
             for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace")
                                      .splitlines(), start=1)
             if UNSHIPPED.search(line)]
    assert found == [], "cite docs/architecture.md §N (Title) instead:\n" + "\n".join(found)


def test_the_architecture_sections_are_numbered_one_to_n_in_order() -> None:
    numbers = [int(n) for n in sections()]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 20


def test_every_citation_names_an_existing_section_by_its_number_and_title() -> None:
    known = sections()
    found = list(citations())
    assert len(found) >= 40  # the scenarios, docs and code comments cite it
    wrong = [f"{where}: §{number} ({title})" for where, number, title in found
             if number not in known or title is None or not title.startswith(known[number])]
    assert wrong == [], ("each citation must read 'docs/architecture.md §N (Title...)' with "
                         f"the section's current title; sections: {known}\n" + "\n".join(wrong))


def test_every_link_into_the_architecture_document_has_a_target() -> None:
    anchors = {anchor(number, title) for number, title in sections().items()}
    broken = [f"{path.relative_to(REPO)}: #{name}" for path in shipped_files()
              for name in LINK.findall(path.read_text(encoding="utf-8", errors="replace"))
              if name not in anchors]
    assert broken == []


def test_the_checks_catch_what_they_are_for() -> None:
    """The patterns match a stale citation and a dangling one (they are not vacuous)."""
    assert UNSHIPPED.search("see " + "DES" + "IGN §5") and not UNSHIPPED.search("our design")
    known = sections()
    number, title = next(iter(known.items()))
    good = CITATION.search(f"docs/architecture.md §{number} ({title}: detail)")
    assert good is not None and good.group(2).startswith(known[number])
    stale = CITATION.search("docs/architecture.md §" + "99 (Nothing)")
    assert stale is not None and stale.group(1) not in known
