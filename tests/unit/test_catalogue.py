"""The conformance catalogue as data: ids, coverage, generated docs, target TOML.

Coverage: docs/architecture.md §21 (Catalogue coverage) lists what the catalogue covers;
`COVERAGE` must map exactly those items, each to scenarios that exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.certify.scenarios import CATALOGUE, COVERAGE, UnknownScenario, by_id, select
from harness.certify.scenarios.docs import DOC_PATH, EXAMPLE_PATH, render_markdown
from harness.certify.scenarios.model import ID_PATTERN
from harness.target_config import HOOKS, load_target
from simkit.settings import ConfigError

ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def architecture_coverage_items() -> list[str]:
    """The bullet items of docs/architecture.md's "Catalogue coverage" section."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    body = re.search(r"^## \d+\. Catalogue coverage\n(.*?)(?=^## )", text, re.S | re.M)
    assert body is not None, "docs/architecture.md has no Catalogue coverage section"
    return re.findall(r"^- (.+)$", body.group(1), re.M)


def test_the_catalogue_has_at_least_thirty_scenarios_with_unique_stable_ids() -> None:
    ids = [item.id for item in CATALOGUE]
    assert len(ids) >= 30
    assert len(set(ids)) == len(ids)
    assert all(ID_PATTERN.fullmatch(i) for i in ids)


def test_every_scenario_has_a_title_requirement_steps_and_known_needs() -> None:
    for item in CATALOGUE:
        assert item.title and item.requirement and item.steps, item.id
        assert all(isinstance(step, str) and len(step) > 5 for step in item.steps), item.id
        assert set(item.needs) <= set(HOOKS), item.id


def test_every_architecture_coverage_item_is_covered_by_scenarios_that_exist() -> None:
    items = architecture_coverage_items()
    assert len(items) >= 18 and len(set(items)) == len(items)
    assert set(COVERAGE) == set(items)
    known = by_id()
    for item, ids in COVERAGE.items():
        assert ids, item
        assert set(ids) <= set(known), (item, set(ids) - set(known))


def test_each_egm_rejection_state_has_a_scenario_with_its_own_code() -> None:
    titles = " ".join(by_id()[i].title for i in COVERAGE["every EGM rejection"])
    for code in ("EGM_BUSY", "EGM_DOOR_OPEN", "EGM_TILT", "EGM_OFFLINE"):
        assert code in titles


def test_select_filters_by_id_and_tag_in_catalogue_order() -> None:
    assert [s.id for s in select(["lim-005", "PAY-001"])] == ["PAY-001", "LIM-005"]
    assert {s.id for s in select(tags=["limits"])} >= {"LIM-001", "LIM-005"}
    assert all("concurrency" in s.tags for s in select(tags=["concurrency"]))
    with pytest.raises(UnknownScenario, match="NOPE-001"):
        select(["NOPE-001"])


def test_the_money_scenarios_of_issue_9_are_in_the_default_run() -> None:
    ids = {item.id for item in select()}
    assert {"FUND-009", "FUND-010", "FUND-011", "FUND-012", "LIM-007", "QR-001",
            "QR-002", "QR-003"} <= ids
    assert "concurrency" in by_id()["FUND-009"].tags and by_id()["FUND-011"].needs == ("faults",)


def test_the_committed_conformance_doc_is_generated_from_the_catalogue() -> None:
    assert DOC_PATH.read_text(encoding="utf-8") == render_markdown(), (
        "docs/conformance.md is stale: run python -m harness.certify.scenarios.docs --write")


def test_the_example_partner_target_parses() -> None:
    spec = load_target(EXAMPLE_PATH)
    assert spec.kind == "partner" and spec.egm_ids == ("EGM-001", "EGM-002", "EGM-003")
    assert spec.cms_profile.auth.kind == "oauth2_client_credentials"
    assert spec.control is not None and "egm-state" in spec.control.hooks
    assert spec.trustly.port == 9710 and spec.merchant.merchant_id == "demo-merchant"
    assert "change-me-admin-token" not in repr(spec)  # secrets stay out of reprs


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "target.toml"
    path.write_text(text)
    return path


PARTNER = """
name = "Acme"
[cms]
base_url = "http://127.0.0.1:9000"
auth = { kind = "api_key", header = "X-Api-Key", key = "k-123456" }
egm_ids = ["A1"]
[cms.egm]
qr_png = "/screens/{egm_id}.png"
"""


def test_a_partner_target_reuses_the_partner_profile_parser(tmp_path: Path) -> None:
    spec = load_target(_write(tmp_path, PARTNER))
    assert spec.name == "Acme" and spec.cms_profile.auth.kind == "api_key"
    assert spec.cms_profile.auth.header == "X-Api-Key"
    assert spec.egm_paths.acquire_qr is None  # only the image named: read, not asked
    assert spec.control is None and spec.trustly.port == 8710


def test_a_local_target_file(tmp_path: Path) -> None:
    spec = load_target(_write(tmp_path, 'kind = "local"\ntrustly_url = "http://127.0.0.1:1"\n'
                                        'cms_url = "http://127.0.0.1:2/"\n'
                                        'admin_token = "token-1234"\n'))
    assert spec.kind == "local" and spec.cms_profile.base_url == "http://127.0.0.1:2"
    assert spec.control is not None and spec.control.hooks == frozenset(HOOKS)


@pytest.mark.parametrize(("text", "message"), [
    ("kind = 'cloud'", "kind must be"),
    ("[cms]\nbase_url = 'http://x'\negm_ids = ['A']", "missing auth"),
    ("[cms]\nbase_url = 'http://x'\nauth = { kind = 'basic', username = 'u' }\n"
     "egm_ids = ['A']", "needs password"),
    ("[cms]\nbase_url = 'http://x'\nauth = { kind = 'basic', username = 'u', password = 'p' }",
     "egm_ids is required"),
    ("[cms]\nbase_url = 'ftp://x'\nauth = { kind = 'basic', username = 'u', password = 'p' }\n"
     "egm_ids = ['A']", r"http\(s\) URL"),
    (PARTNER + "[control]\nhooks = ['clock']\n", "admin_token is required"),
    (PARTNER + "[control]\nadmin_token = 't'\nhooks = ['time-travel']\n", "unknown hook"),
    (PARTNER + "[trustly]\nport = 70000\n", "port must be"),
    (PARTNER + "[trustly]\nhots = 'x'\n", "unknown key"),
    ("kind = 'local'\ntrustly_url = 'http://x'\n", "needs cms_url"),
    ("[cms\n", "config"),
])
def test_bad_target_files_are_refused_with_a_message_naming_the_problem(
    tmp_path: Path, text: str, message: str,
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_target(_write(tmp_path, text))
    assert "target.toml" in str(info.value)


def test_a_missing_target_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_target(tmp_path / "absent.toml")
