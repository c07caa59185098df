# ruff: noqa: E501 - Markdown tables are one line per row
"""The parts of docs/partner-contract.md that come from code, and the hooks' OpenAPI file.

docs/partner-contract.md is prose written by hand with generated blocks between
`<!-- BEGIN GENERATED: name -->` and `<!-- END GENERATED: name -->` markers: the target file's
keys (from `harness.target_config.TARGET_KEYS` and sim_trustly's partner-profile records),
the CMS API calls (from the profile's default paths and docs/api/cms.openapi.json), the EGM
calls and the control hooks (from the hooks' OpenAPI document), which scenarios need which
hook (from the catalogue's `needs`), and the verdicts' exit codes (`harness.certify.results`). docs/api/partner-hooks.openapi.json is
`harness.contract.openapi.build_document()`.

    python -m harness.contract.doc            # exit 1 and name what is stale
    python -m harness.contract.doc --write    # rewrite both files

A unit test (tests/unit/test_partner_contract.py) fails when either file is stale.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.certify.results import DISCLAIMER, EXIT_CODES
from harness.certify.scenarios import CATALOGUE
from harness.contract.openapi import build_document, operations
from harness.target_config import HOOK_MEANINGS, HOOKS, TARGET_KEYS
from sim_trustly.cms_client import partner_profiles as profiles

REPO = Path(__file__).resolve().parents[2]
DOC_PATH = REPO / "docs" / "partner-contract.md"
OPENAPI_PATH = REPO / "docs" / "api" / "partner-hooks.openapi.json"
CMS_OPENAPI_PATH = REPO / "docs" / "api" / "cms.openapi.json"
BLOCK = re.compile(r"(<!-- BEGIN GENERATED: (?P<name>[a-z-]+) -->\n)(?P<body>.*?)"
                   r"(<!-- END GENERATED: (?P=name) -->)", re.DOTALL)

# The [cms] table is a sim_trustly partner profile: what each of its keys means.
PROFILE_MEANINGS: dict[str, str] = {
    "base_url": "where the CMS's API is (http(s) URL)",
    "auth": "how TPAS, and the harness as TPAS and as the EGM, authenticate (table below)",
    "connect_timeout_s": "TPAS's connect timeout, seconds",
    "read_timeout_s": "TPAS's read timeout, seconds: an answer later than this is a lost "
                      "answer, and TPAS asks the status inquiry, then retries the same "
                      "transactionId; FUND-013 fails a CMS whose fundings are answered later "
                      "than this",
    "retries": "how often and how patiently TPAS retries a funding whose outcome it does not "
               "know (table below)",
    "paths": "the CMS API's paths, when they differ from the reference ones (table below)",
    "adapter": "`module:Class` of a Python adapter for a CMS whose API differs from the "
               "reference one (docs/partner-adapters.md); TPAS uses it, the scenarios that "
               "call the Funding API directly do not",
    "profile_file": "a TOML file holding the other keys (must stand alone)",
    "auth.kind": "`oauth2_client_credentials`, `basic` or `api_key`",
    "auth.client_id": "oauth2_client_credentials: the client id",
    "auth.client_secret": "oauth2_client_credentials: the client secret",
    "auth.username": "basic: the user",
    "auth.password": "basic: the password",
    "auth.header": "api_key: the header that carries the key",
    "auth.key": "api_key: the key",
    "retries.max_attempts": "sends of one funding at most (1..100)",
    "retries.backoff_base_s": "the first backoff, doubled each retry",
    "retries.backoff_cap_s": "the longest backoff",
    "paths.token": "OAuth2 token endpoint (POST, form `grant_type=client_credentials`)",
    "paths.fundings": "Funding API (POST)",
    "paths.funding_status": "status inquiry (GET), with `{transactionId}`",
    "paths.limits": "Daily Limits API (GET, PUT, PATCH, DELETE), with `{ubai}`",
}
_PROFILE_DEFAULTS = {"base_url": "required", "auth": "required", "adapter": "none",
                     "profile_file": "none", "auth.kind": '"oauth2_client_credentials"'}


def _value(value: object) -> str:
    if value is None:
        return "none"
    return f'"{value}"' if isinstance(value, str) else str(value)


def _field_default(cls: type, name: str) -> str:
    for item in dataclasses.fields(cls):
        if item.name == name and item.default not in (dataclasses.MISSING, ""):
            return _value(item.default)
    return "required for its kind"


def profile_keys() -> list[tuple[str, str, str]]:
    """(dotted key, default, meaning) of every key the [cms] table accepts."""
    tables: list[tuple[str, frozenset[str], type]] = [
        ("", profiles._PROFILE_KEYS | {"profile_file"}, profiles.CmsProfile),
        ("auth.", profiles._AUTH_KEYS, profiles.AuthConfig),
        ("retries.", profiles._RETRY_KEYS, profiles.RetryPolicy),
        ("paths.", profiles._PATH_KEYS, profiles.CmsPaths)]
    rows = []
    for prefix, keys, cls in tables:
        for key in sorted(keys):
            dotted = prefix + key
            default = _PROFILE_DEFAULTS.get(dotted) or (
                "all defaults" if key in ("retries", "paths") else _field_default(cls, key))
            rows.append((dotted, default, PROFILE_MEANINGS.get(dotted, "")))
    return rows


def _keys_block() -> list[str]:
    lines = ["| Key | Type | Default | Target kinds | Meaning |", "|---|---|---|---|---|"]
    for doc in TARGET_KEYS:
        lines.append(f"| `{doc.dotted}` | {doc.type} | {doc.default} | {', '.join(doc.kinds)} "
                     f"| {doc.description} |")
    lines += ["", "The `[cms]` table of a partner file is a partner profile, parsed by the same "
              "code as sim_trustly's (docs/partner-adapters.md):", "",
              "| Key | Default | Meaning |", "|---|---|---|"]
    lines += [f"| `cms.{key}` | {default} | {meaning} |" for key, default, meaning in profile_keys()]
    return lines


def _cms_api_block() -> list[str]:
    cms_doc = json.loads(CMS_OPENAPI_PATH.read_text(encoding="utf-8"))
    paths = profiles.CmsPaths()
    lines = ["| Key of `[cms].paths` | Default path | Method | Operation in cms.openapi.json |",
             "|---|---|---|---|"]
    for key in ("token", "fundings", "funding_status", "limits"):
        default = getattr(paths, key)
        item = cms_doc["paths"][default]
        for method in ("get", "put", "patch", "post", "delete"):
            if method in item:
                lines.append(f"| `{key}` | `{default}` | {method.upper()} | "
                             f"`{item[method]['operationId']}` |")
    return lines


def _auth_of(operation: dict[str, Any]) -> str:
    schemes = [name for requirement in operation.get("security", []) for name in requirement]
    if not schemes:
        return "none"
    if schemes == ["adminBearer"]:
        return "`Authorization: Bearer <control.admin_token>`"
    return "the `[cms].auth` credentials (as TPAS)"


def _egm_block(document: dict[str, Any]) -> list[str]:
    lines = ["| Key | Method | Default path | Auth | Answer |", "|---|---|---|---|---|"]
    for (method, path), operation in operations(document).items():
        hook = operation["x-scanpay-hook"]
        if hook.startswith("cms.egm."):
            ok = operation["responses"]["200"]
            media = next(iter(ok.get("content", {})), "")
            schema = ok["content"][media]["schema"].get("$ref", "").rpartition("/")[2]
            answer = f"`{media}`" + (f" `{schema}`" if schema else "")
            lines.append(f"| `{hook}` | {method} | `{path.replace('{egmId}', '{egm_id}')}` | "
                         f"{_auth_of(operation)} | {answer} |")
    return lines


def needed_by() -> dict[str, list[str]]:
    """Hook -> the scenarios that declare it in `needs`, in catalogue order."""
    found: dict[str, list[str]] = {hook: [] for hook in HOOKS}
    for item in CATALOGUE:
        for hook in item.needs:
            found.setdefault(hook, []).append(item.id)
    return found


def _hooks_block(document: dict[str, Any]) -> list[str]:
    calls: dict[str, list[str]] = {hook: [] for hook in HOOKS}
    for (method, path), operation in operations(document).items():
        if operation["x-scanpay-hook"] in calls:
            calls[operation["x-scanpay-hook"]].append(f"`{method} {path}` ({operation['operationId']})")
    users = needed_by()
    lines = ["| Hook | Calls | Meaning | Scenarios that need it |", "|---|---|---|---|"]
    for hook in HOOKS:
        lines.append(f"| `{hook}` | {'<br>'.join(calls[hook])} | {HOOK_MEANINGS[hook]} | "
                     f"{', '.join(users[hook]) or 'none (used when offered)'} |")
    free = [item.id for item in CATALOGUE if not item.needs]
    lines += ["", f"{len(free)} of the {len(CATALOGUE)} scenarios need no hook: {', '.join(free)}."]
    return lines


def _scenarios_block() -> list[str]:
    lines = ["| Scenario | Title | Needs |", "|---|---|---|"]
    lines += [f"| {item.id} | {item.title} | {', '.join(f'`{n}`' for n in item.needs) or '-'} |"
              for item in CATALOGUE]
    return lines


VERDICT_MEANINGS = {"PASSED": "every scenario ran and passed",
                    "FAILED": "a scenario failed or errored",
                    "ERROR": "the run could not start: the preflight's one-paragraph diagnosis "
                             "says why (the target file, the CMS, its auth, a hook, the QR's "
                             "Trustly, the harness's port)",
                    "INCOMPLETE": "nothing failed, but scenarios were skipped (a hook not "
                                  "offered): not a pass"}


def _verdicts_block() -> list[str]:
    lines = ["| Verdict | Exit code of `scanpay certify` | When |", "|---|---|---|"]
    lines += [f"| {verdict} | {code} | {VERDICT_MEANINGS.get(verdict, '')} |"
              for verdict, code in sorted(EXIT_CODES.items(), key=lambda item: item[1])]
    return [*lines, "", f"Every report says: *{DISCLAIMER}*"]


def blocks() -> dict[str, Callable[[], list[str]]]:
    """Every generated block of the document, by marker name."""
    document = build_document()
    return {"target-keys": _keys_block, "cms-api": _cms_api_block,
            "egm-calls": lambda: _egm_block(document),
            "hooks": lambda: _hooks_block(document), "scenarios": _scenarios_block,
            "verdicts": _verdicts_block}


def render(text: str) -> str:
    """`text` with every generated block replaced by its current content."""
    makers = blocks()
    seen: set[str] = set()

    def fill(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in makers:
            raise KeyError(f"docs/partner-contract.md has an unknown generated block {name!r}")
        seen.add(name)
        return match.group(1) + "\n".join(makers[name]()) + "\n" + match.group(4)

    rendered = BLOCK.sub(fill, text)
    missing = sorted(set(makers) - seen)
    if missing:
        raise KeyError(f"docs/partner-contract.md lacks the generated block(s) {missing}")
    return rendered


def openapi_text() -> str:
    """docs/api/partner-hooks.openapi.json as it should be."""
    return json.dumps(build_document(), indent=2, ensure_ascii=False) + "\n"


def stale() -> list[Path]:
    """The files that differ from what the code generates."""
    out = []
    if render(DOC_PATH.read_text(encoding="utf-8")) != DOC_PATH.read_text(encoding="utf-8"):
        out.append(DOC_PATH)
    if not OPENAPI_PATH.exists() or OPENAPI_PATH.read_text(encoding="utf-8") != openapi_text():
        out.append(OPENAPI_PATH)
    return out


def main(argv: list[str]) -> int:
    """Check (exit 1 when stale) or, with `--write`, rewrite both files."""
    if "--write" in argv:
        DOC_PATH.write_text(render(DOC_PATH.read_text(encoding="utf-8")), encoding="utf-8")
        OPENAPI_PATH.write_text(openapi_text(), encoding="utf-8")
        print(f"wrote {DOC_PATH.relative_to(REPO)} and {OPENAPI_PATH.relative_to(REPO)}")
        return 0
    for path in stale():
        print(f"{path.relative_to(REPO)} is stale: run python -m harness.contract.doc --write")
    return 1 if stale() else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
