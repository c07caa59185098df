"""The harness's layout keeps its rules: what judges a partner never reads a sim's code.

docs/architecture.md §19 (Harness) lays `harness/` out by job. A certify scenario, the runner,
the reports and the message sequence judge a target only through the harness's clients and
the control API, so they import nothing from `sim_trustly` or `sim_cms` (a scenario that read
a sim's internals would pass against our sims and mean nothing against a partner's CMS). The
sims, in turn, never import the harness. Only `harness/clients/` speaks HTTP: one client per
service (the CMS, the phone's Trustly, Trustly's QR Code API, a sim's control API), so no
two modules of the harness talk to the same service and every other module names the HTTP
library's types through `harness.clients.http`. Nor does another module build a client of its
own through that module: it neither makes the library's `Client` nor sends a one-off request
(`get_once`), nor changes whom a client it was handed speaks to or as whom (its credentials,
headers, cookies, base URL, request hooks); a client comes from `open_client` (the targets'
`cms_client`, `trustly_client`, `phone_client`) and goes to the client of its service. And the
top of `harness/` holds only the modules every package shares: a new module goes into the
package of its job.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "harness"
SIMS = ("sim_trustly", "sim_cms")
# What judges a target: it may reach a system only over HTTP.
JUDGING = ("certify", "report", "sequence")
CLIENTS = HARNESS / "clients"
# Every way Python code can send an HTTP request (the harness uses httpx).
HTTP_LIBRARIES = ("httpx", "requests", "urllib.request", "urllib3", "http.client", "aiohttp")
HTTP_MODULE = "harness.clients.http"
# What builds a client, or speaks HTTP without one, if called outside harness/clients/.
CLIENT_BUILDERS = frozenset({"Client", "get_once"})
# What a client's owner sets to make it speak to another system, or as someone else.
CLIENT_IDENTITY = frozenset({"auth", "base_url", "cookies", "event_hooks", "headers"})
SHARED_MODULES = {"__init__.py", "embedded.py", "flow.py", "server_logs.py",
                  "target_config.py", "targets.py"}


def imported(path: Path) -> Iterator[str]:
    """Every module `path` imports, at the top or inside a function."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def imports_of(paths: Iterator[Path], roots: tuple[str, ...]) -> dict[str, list[str]]:
    """The files among `paths` that import a module under one of `roots`, and what."""
    found: dict[str, list[str]] = {}
    for path in paths:
        hits = [name for name in imported(path) if name.split(".")[0] in roots]
        if hits:
            found[str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)] = hits
    return found


def http_imports(paths: Iterator[Path]) -> dict[str, list[str]]:
    """The files among `paths` that import an HTTP library (`HTTP_LIBRARIES`) or part of one
    (`from urllib import request` too), and what."""
    found: dict[str, list[str]] = {}
    for path in paths:
        names: list[str] = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        hits = sorted({name for name in names for library in HTTP_LIBRARIES
                       if name == library or name.startswith(f"{library}.")})
        if hits:
            found[str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)] = hits
    return found


def client_builds(paths: Iterator[Path]) -> dict[str, list[str]]:
    """The files among `paths` that call `CLIENT_BUILDERS` of `harness.clients.http` (by name,
    alias or through the module) or set a client's `CLIENT_IDENTITY`, and where."""
    found: dict[str, list[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names: dict[str, str] = {}  # local name -> what it is in harness.clients.http
        modules: set[str] = set()  # local names of harness.clients.http itself
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == HTTP_MODULE:
                names.update({alias.asname or alias.name: alias.name for alias in node.names})
            elif isinstance(node, ast.ImportFrom) and node.module == "harness.clients":
                modules.update(alias.asname or alias.name for alias in node.names
                               if alias.name == "http")
            elif isinstance(node, ast.Import):
                modules.update(alias.asname or alias.name for alias in node.names
                               if alias.name == HTTP_MODULE)
        hits: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and names.get(func.id) in CLIENT_BUILDERS:
                    hits.append(f"line {node.lineno}: calls {names[func.id]}")
                elif (isinstance(func, ast.Attribute) and func.attr in CLIENT_BUILDERS
                      and ast.unparse(func.value) in modules):
                    hits.append(f"line {node.lineno}: calls {func.attr}")
                elif (isinstance(func, ast.Attribute) and func.attr == "update"
                      and isinstance(func.value, ast.Attribute)
                      and func.value.attr in CLIENT_IDENTITY):
                    hits.append(f"line {node.lineno}: sets .{func.value.attr}")
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            for target in targets:
                # client.headers["X"] = ... sets the headers as much as client.headers = ...
                set_ = target.value if isinstance(target, ast.Subscript) else target
                if isinstance(set_, ast.Attribute) and set_.attr in CLIENT_IDENTITY:
                    hits.append(f"line {target.lineno}: sets .{set_.attr}")
        if hits:
            found[str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)] = hits
    return found


def test_nothing_that_judges_a_target_imports_a_sim() -> None:
    judging = (path for package in JUDGING for path in (HARNESS / package).rglob("*.py"))
    assert imports_of(judging, SIMS) == {}, (
        "judge through harness/clients/ and the control API, never a sim's code")


def test_the_sims_never_import_the_harness() -> None:
    sims = (path for sim in SIMS for path in (REPO / sim).rglob("*.py"))
    assert imports_of(sims, ("harness",)) == {}


def test_the_top_of_the_harness_holds_only_the_shared_modules() -> None:
    top = {path.name for path in HARNESS.glob("*.py")}
    assert top - SHARED_MODULES == set(), "put a new module in the package of its job"
    # a directory left with only a stale __pycache__ (a package moved away) is no package
    packages = [path for path in HARNESS.iterdir() if path.is_dir() and any(path.glob("*.py"))]
    assert [path.name for path in packages if not (path / "__init__.py").is_file()] == []


def test_the_import_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    planted = tmp_path / "scenario.py"
    planted.write_text("import json\n\ndef run():\n"
                       "    from sim_trustly.tpas.reconciliation import reconcile_service\n",
                       encoding="utf-8")
    assert imports_of(iter([planted]), SIMS) == {str(planted): ["sim_trustly.tpas.reconciliation"]}


def test_only_the_clients_speak_http() -> None:
    outside = (path for path in HARNESS.rglob("*.py") if CLIENTS not in path.parents)
    assert http_imports(outside) == {}, (
        "call a system through its client in harness/clients/ (add a method there)")


def test_the_http_scan_sees_every_way_to_import_a_library(tmp_path: Path) -> None:
    planted = tmp_path / "scenario.py"
    planted.write_text("from urllib.parse import urlsplit\nfrom urllib import request\n\n"
                       "def run():\n    import httpx\n", encoding="utf-8")
    assert http_imports(iter([planted])) == {
        str(planted): ["httpx", "urllib.request"]}
    assert http_imports(iter([CLIENTS / "http.py"])) != {}, "the clients' own imports are seen"


def test_no_module_outside_the_clients_builds_a_client_of_its_own() -> None:
    outside = (path for path in HARNESS.rglob("*.py") if CLIENTS not in path.parents)
    assert client_builds(outside) == {}, (
        "open a client with open_client and hand it to its service's client in "
        "harness/clients/ (add a method there)")


def test_the_client_scan_sees_every_way_to_build_or_redirect_a_client(tmp_path: Path) -> None:
    planted = tmp_path / "scenario.py"
    planted.write_text(
        "from harness.clients import http as web\n"
        "import harness.clients.http\n"
        "from harness.clients.http import Client as C, get_once, open_client\n\n"
        "def run(target):\n"
        "    C(base_url='http://cms')\n"
        "    web.Client()\n"
        "    harness.clients.http.get_once('http://cms/openapi.json', 1)\n"
        "    get_once('http://cms/openapi.json', 1)\n"
        "    with target.trustly_client() as client:\n"
        "        client.auth = ('id', 'key')\n"
        "        client.headers['X'] = 'y'\n"
        "        client.cookies.update({'session': 'theirs'})\n"
        "    return open_client('http://cms', headers={'User-Agent': 'fine'})\n",
        encoding="utf-8")
    assert sorted(client_builds(iter([planted]))[str(planted)]) == [
        "line 11: sets .auth", "line 12: sets .headers", "line 13: sets .cookies",
        "line 6: calls Client", "line 7: calls Client", "line 8: calls get_once",
        "line 9: calls get_once"]
