"""docs/partner-contract.md and docs/api/partner-hooks.openapi.json say what the code does.

The committed files equal what `python -m harness.contract.doc --write` generates; every key
the target-file parser accepts is in the key table; every `/_sim` path the harness's code
names is either a documented hook or a route of the harness's own Trustly; every documented
hook is one the harness calls; and the hooks document is valid OpenAPI 3.1.
"""

from __future__ import annotations

import ast
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from openapi_spec_validator import validate
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from harness import target_config
from harness.certify.scenarios import CATALOGUE
from harness.contract import doc as contract_doc
from harness.contract.openapi import build_document, operations, template_pattern
from harness.target_config import HOOK_OPERATIONS, HOOKS, EgmPaths
from sim_trustly.cms_client import partner_profiles
from tests.conftest import TrustlyFactory

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "harness"
# The modules that document the hooks (they name every path by construction).
DOCUMENTING = frozenset({HARNESS / "contract" / "doc.py", HARNESS / "contract" / "openapi.py",
                         HARNESS / "target_config.py"})
HOOK_OPERATIONS_FLAT = [operation for hook in HOOKS for operation in HOOK_OPERATIONS[hook]]
SIM_PATH = re.compile(r"/_sim/[A-Za-z0-9_{}.\-/]*[A-Za-z0-9_}]")


def _strings(path: Path) -> Iterator[str]:
    """Every string literal of a module; f-strings with each placeholder as `{x}`."""
    nodes = list(ast.walk(ast.parse(path.read_text(encoding="utf-8"))))
    parts = {id(part) for node in nodes if isinstance(node, ast.JoinedStr) for part in node.values}
    for node in nodes:
        if isinstance(node, ast.JoinedStr):
            yield "".join(str(part.value) if isinstance(part, ast.Constant) else "{x}"
                          for part in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in parts:
            yield node.value


def harness_sim_paths(*, skip: frozenset[Path] = frozenset()) -> dict[str, set[str]]:
    """Every `/_sim/...` path the harness's code names -> the modules naming it."""
    found: dict[str, set[str]] = {}
    for module in sorted(HARNESS.rglob("*.py")):
        if module in skip:
            continue
        for text in _strings(module):
            for path in SIM_PATH.findall(text):
                found.setdefault(path, set()).add(str(module.relative_to(REPO)))
    return found


def _documented(path: str) -> bool:
    concrete = re.sub(r"\{[^}]*\}", "X1", path)
    return any(template_pattern(template).match(concrete)
               for _method, template in operations(build_document()))


def _served_by(app: Flask, path: str) -> bool:
    adapter = app.url_map.bind("localhost")
    concrete = re.sub(r"\{[^}]*\}", "X1", path)
    try:
        adapter.match(concrete, method="GET")
    except MethodNotAllowed:
        return True
    except (NotFound, RequestRedirect):
        return False
    return True


def test_the_committed_contract_is_what_the_code_generates() -> None:
    assert contract_doc.stale() == [], "run python -m harness.contract.doc --write"


def test_the_hooks_document_is_valid_openapi_3_1() -> None:
    validate(json.loads(contract_doc.OPENAPI_PATH.read_text(encoding="utf-8")))


def test_every_key_the_target_parser_accepts_is_in_the_key_table() -> None:
    text = contract_doc.DOC_PATH.read_text(encoding="utf-8")
    tables = {"": set().union(*target_config._TOP_KEYS.values()),
              "cms.": target_config._CMS_EXTRA_KEYS, "cms.egm.": target_config._EGM_KEYS,
              "control.": target_config._CONTROL_KEYS, "trustly.": target_config._TRUSTLY_KEYS,
              "cms.auth.": partner_profiles._AUTH_KEYS,
              "cms.retries.": partner_profiles._RETRY_KEYS,
              "cms.paths.": partner_profiles._PATH_KEYS}
    tables["cms."] = tables["cms."] | partner_profiles._PROFILE_KEYS | {"profile_file"}
    missing = [prefix + key for prefix, keys in tables.items() for key in keys
               if f"| `{prefix}{key}` |" not in text]
    assert missing == []


def test_every_documented_key_is_accepted_by_the_parser(tmp_path: Path) -> None:
    """A file naming every partner key parses (the table promises nothing the parser refuses)."""
    target = tmp_path / "all-keys.toml"
    target.write_text("""
kind = "partner"
name = "every key"
[cms]
base_url = "http://127.0.0.1:9720"
auth = { kind = "basic", username = "u", password = "p" }
connect_timeout_s = 1.0
read_timeout_s = 2.0
retries = { max_attempts = 2, backoff_base_s = 0.1, backoff_cap_s = 1.0 }
egm_ids = ["A"]
limits_auth = { client_id = "desk", client_secret = "s" }
[cms.paths]
token = "/t"
fundings = "/f"
funding_status = "/f/{transactionId}"
limits = "/l/{ubai}"
[cms.egm]
read = "/e/{egm_id}"
acquire_qr = "/e/{egm_id}/qr"
qr_png = "/e/{egm_id}/qr.png"
screen = "/s/{egm_id}"
[control]
base_url = "http://127.0.0.1:9721"
admin_token = "t"
hooks = ["clock"]
[trustly]
host = "127.0.0.1"
port = 9710
public_url = "http://127.0.0.1:9710"
merchant_id = "m"
access_id = "a"
access_key = "k"
merchant_name = "n"
token_lifetime_s = 120
""")
    spec = target_config.load_target(target)
    raw = tomllib.loads(target.read_text())
    named = {".".join(path) for path in _dotted(raw)}
    documented = {doc.dotted for doc in target_config.TARGET_KEYS if "partner" in doc.kinds}
    assert documented <= named, "this test's file should name every documented partner key"
    assert spec.merchant.token_lifetime_s == 120 and spec.egm_paths.screen == "/s/{egm_id}"
    assert spec.cms_limits_auth is not None and spec.cms_limits_auth.client_id == "desk"


def _dotted(table: dict[str, object], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in table.items():
        yield (*prefix, key)
        if isinstance(value, dict) and key not in ("auth", "limits_auth", "retries", "paths"):
            yield from _dotted(value, (*prefix, key))


def test_every_hook_has_its_documented_operations() -> None:
    documented = operations(build_document())
    by_hook: dict[str, set[tuple[str, str]]] = {}
    for key, operation in documented.items():
        by_hook.setdefault(operation["x-scanpay-hook"], set()).add(key)
    for hook in HOOKS:
        assert by_hook.get(hook) == set(HOOK_OPERATIONS[hook]), hook
    egm_keys = {f"cms.egm.{name}" for name in EgmPaths.__dataclass_fields__}
    assert {hook for hook in by_hook if hook.startswith("cms.egm.")} == egm_keys
    assert set(by_hook) == set(HOOKS) | egm_keys


def test_every_hook_a_scenario_needs_is_a_documented_hook() -> None:
    needed = {hook for item in CATALOGUE for hook in item.needs}
    assert needed <= set(HOOKS)
    text = contract_doc.DOC_PATH.read_text(encoding="utf-8")
    for item in CATALOGUE:  # and the document says which scenario needs what
        needs = ", ".join(f"`{n}`" for n in item.needs) or "-"
        assert f"| {item.id} | {item.title} | {needs} |" in text, (
            f"{item.id} is not in partner-contract.md as it is: run "
            "python -m harness.contract.doc --write")


@pytest.fixture
def trustly_app(make_trustly: TrustlyFactory) -> Flask:
    return make_trustly()


def test_every_control_path_the_harness_names_is_a_documented_hook_or_its_own_trustly(
    trustly_app: Flask,
) -> None:
    """A new `/_sim` call in the harness fails here until the contract documents it (or it
    is a call to the harness's own Trustly, which sim_trustly serves)."""
    found = harness_sim_paths(skip=DOCUMENTING)
    assert found, "the scan found no control path at all: the scan is broken"
    undocumented = {path: sorted(modules) for path, modules in found.items()
                    if not _documented(path) and not _served_by(trustly_app, path)}
    assert undocumented == {}, "document these hooks in harness/target_config.HOOK_OPERATIONS"


def test_every_documented_hook_is_called_by_the_harness() -> None:
    """The contract promises no hook the harness never calls."""
    named = harness_sim_paths(skip=DOCUMENTING)
    for _method, template in HOOK_OPERATIONS_FLAT:
        pattern = template_pattern(template)
        assert any(pattern.match(re.sub(r"\{[^}]*\}", "X1", path)) for path in named), template



def test_every_verdict_of_certify_is_explained() -> None:
    from harness.certify.results import EXIT_CODES

    assert set(contract_doc.VERDICT_MEANINGS) == set(EXIT_CODES)
