"""The Locust journeys run where only loadtests/ is: they import nothing from the project.

loadtests/README.md ("Install") promises that a load machine needs Locust and this folder
alone, and docker-compose's workers run `locust -f loadtests/locustfile.py`; so every module
Locust loads may import the standard library, Locust and what it brings (gevent, requests),
and its siblings in loadtests/, never `simkit` or the sims (which is why the journeys wait
through `loadtests/waiting.py`, not `simkit.wait`). The soak (`python -m loadtests.soak`)
runs from a checkout and is not loaded by Locust.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LOADTESTS = Path(__file__).resolve().parents[2] / "loadtests"
RUN_FROM_A_CHECKOUT = {"soak.py"}
BROUGHT_BY_LOCUST = {"locust", "gevent", "requests"}


def foreign_imports(path: Path, siblings: set[str]) -> list[str]:
    """The modules `path` imports that are neither the standard library, Locust's, nor a
    sibling module of loadtests/."""
    allowed = set(sys.stdlib_module_names) | BROUGHT_BY_LOCUST | siblings | {"__future__"}
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return sorted({name for name in names if name.split(".")[0] not in allowed})


def test_what_locust_loads_imports_nothing_from_the_project() -> None:
    modules = {path.stem: path for path in LOADTESTS.glob("*.py")
               if path.name not in RUN_FROM_A_CHECKOUT}
    assert {"locustfile", "waiting"} <= set(modules)
    found = {name: foreign_imports(path, set(modules)) for name, path in modules.items()}
    assert {name: hits for name, hits in found.items() if hits} == {}


def test_the_scan_sees_an_import_of_the_project(tmp_path: Path) -> None:
    planted = tmp_path / "floor.py"
    planted.write_text("import json\nfrom base import pick\n\ndef play():\n"
                       "    from simkit.wait import poll_until\n", encoding="utf-8")
    assert foreign_imports(planted, {"base"}) == ["simkit.wait"]
