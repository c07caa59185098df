"""The sims' layout stays what docs/architecture.md says it is.

A newcomer finds a system by its package (`sim_trustly/auth_service/`, `tpas/`,
`cms_client/`, `microsite/`; `sim_cms/funding/`), so every module path the docs cite must
exist, every file the Components table names must be in its sim, and the top of each sim
keeps only the entry points and the modules its systems share: a new flat module fails here
until it is put in its system's package (or the list below says why it belongs at the top).

Views follow one convention (docs/architecture.md §3 (Components)): a module that defines a
Flask blueprint or adds routes is named `api.py` in its system's package or `<thing>_api.py`,
and it opens no transaction: it parses HTTP and calls a service function with plain values,
and the service owns its transaction.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = (*sorted((REPO / "docs").glob("*.md")), REPO / "README.md")
CITED_PATH = re.compile(r"\b((?:sim_trustly|sim_cms)/[\w/]+\.py)\b")
TABLE_ROW = re.compile(r"^\| `(sim_trustly|sim_cms)/` \|(.*)\|$", re.MULTILINE)
NAMED_FILE = re.compile(r"`([\w/]+\.py)`")

# The top of each sim: entry points deployments name, and what every system of the sim uses.
TOP_LEVEL = {
    "sim_trustly": {"__init__", "admin_api", "app", "context", "control_openapi", "errors",
                    "gunicorn_hooks", "models", "settings", "wsgi"},
    "sim_cms": {"__init__", "access_tokens", "admin_api", "app", "audit", "client_lockout",
                "context", "control_openapi", "control_state", "egm_registry", "egms",
                "egms_api", "errors", "ledger", "limits", "limits_api", "models", "oauth_api",
                "openapi", "openapi_schemas", "qr_display", "qr_store", "reads", "scopes",
                "screen_api", "seed", "settings", "trustly_client", "wsgi"},
}
SIMS = ("sim_trustly", "sim_cms")
VIEW_MODULE = re.compile(r"(?:[a-z0-9]+_)*api")
# The OpenAPI document modules serve their one generated document at one route, and are run
# as `python -m <module>` to rewrite the committed copy (a command the docs give), so they
# keep the name of what they hold.
DOCUMENT_MODULES = {"openapi", "control_openapi"}
ROUTE_DECORATORS = {"route", "get", "post", "put", "patch", "delete"}
TRANSACTIONS = {"read", "write", "core_read", "core_write", "begin", "connect"}


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


def _defines_routes(tree: ast.Module) -> bool:
    """Whether a module makes a Blueprint, adds URL rules or decorates a view with a route."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "Blueprint":
                return True
            if isinstance(func, ast.Attribute) and func.attr == "add_url_rule":
                return True
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
                        and decorator.func.attr in ROUTE_DECORATORS):
                    return True
    return False


def view_modules() -> dict[str, ast.Module]:
    """Every sim module that defines routes: path relative to the repo -> its syntax tree."""
    found = {}
    for sim in SIMS:
        for path in sorted((REPO / sim).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            if _defines_routes(tree):
                found[str(path.relative_to(REPO))] = tree
    return found


def _opened_transactions(tree: ast.Module) -> list[int]:
    """Lines where a `with` opens a database transaction or connection (`db.read()`...)."""
    return [item.context_expr.lineno
            for node in ast.walk(tree) if isinstance(node, ast.With)
            for item in node.items
            if isinstance(item.context_expr, ast.Call)
            and isinstance(item.context_expr.func, ast.Attribute)
            and item.context_expr.func.attr in TRANSACTIONS]


def test_view_modules_follow_one_name_pattern() -> None:
    views = view_modules()
    assert "sim_cms/funding/api.py" in views and "sim_cms/limits_api.py" in views  # found at all
    misnamed = [path for path in views
                if not VIEW_MODULE.fullmatch(Path(path).stem)
                and Path(path).stem not in DOCUMENT_MODULES]
    assert misnamed == [], "name view modules api.py (in a package) or <thing>_api.py"


def test_view_modules_open_no_transaction() -> None:
    opened = {path: lines for path, tree in view_modules().items()
              if (lines := _opened_transactions(tree))}
    assert opened == {}, "a view calls a service that owns its transaction"
