"""The sims' layout stays what docs/architecture.md says it is.

A newcomer finds a system by its package (`sim_trustly/auth_service/`, `tpas/`,
`cms_client/`, `microsite/`; `sim_cms/funding/`), so every module path the docs cite must
exist, every file the Components table names must be in its sim, and the top of each sim
keeps only the entry points and the modules its systems share: a new flat module fails here
until it is put in its system's package (or the list below says why it belongs at the top).
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = (*sorted((REPO / "docs").glob("*.md")), REPO / "README.md")
CITED_PATH = re.compile(r"\b((?:sim_trustly|sim_cms)/[\w/]+\.py)\b")
TABLE_ROW = re.compile(r"^\| `(sim_trustly|sim_cms)/` \|(.*)\|$", re.MULTILINE)
NAMED_FILE = re.compile(r"`([\w/]+\.py)`")

# The top of each sim: entry points deployments name, and what every system of the sim uses.
TOP_LEVEL = {
    "sim_trustly": {"__init__", "admin", "app", "context", "control_openapi", "errors",
                    "gunicorn_hooks", "models", "settings", "wsgi"},
    "sim_cms": {"__init__", "access_tokens", "admin", "app", "audit", "client_lockout",
                "context", "control_openapi", "egms", "egms_api", "errors", "ledger", "limits",
                "limits_api", "models", "oauth", "openapi", "openapi_schemas", "qr_display",
                "qr_store", "reads", "scopes", "screen", "seed", "settings",
                "trustly_client", "wsgi"},
}


def cited_paths() -> dict[str, list[str]]:
    """Every sim module path the docs cite: path -> the documents citing it."""
    cited: dict[str, list[str]] = {}
    for doc in DOCS:
        for path in CITED_PATH.findall(doc.read_text(encoding="utf-8")):
            cited.setdefault(path, []).append(doc.name)
    return cited


def test_every_sim_module_the_docs_cite_exists() -> None:
    cited = cited_paths()
    assert "sim_cms/funding/decide.py" in cited  # the parser finds the paths at all
    missing = {path: docs for path, docs in cited.items() if not (REPO / path).is_file()}
    assert missing == {}


def test_every_file_the_components_table_names_is_in_its_sim() -> None:
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = dict(TABLE_ROW.findall(text))
    assert set(rows) == {"sim_trustly", "sim_cms"}
    for sim, row in rows.items():
        present = {str(p.relative_to(REPO / sim)) for p in (REPO / sim).rglob("*.py")}
        names = NAMED_FILE.findall(row)
        assert names, sim
        missing = [name for name in names
                   if name not in present and not any(p.endswith("/" + name) for p in present)]
        assert missing == [], f"{sim}'s row names files it does not have"


def test_the_top_of_each_sim_holds_only_entry_points_and_shared_modules() -> None:
    for sim, allowed in TOP_LEVEL.items():
        flat = {p.stem for p in (REPO / sim).glob("*.py")}
        assert flat - allowed == set(), f"put these in one of {sim}'s packages"
