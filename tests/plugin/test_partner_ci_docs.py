"""The partner CI example's README and CI snippets stay true to the plugin they describe."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

import harness.plugin.pytest_plugin as plugin

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "partner_ci"
SNIPPETS = ("github-actions.yml", "gitlab-ci.yml")


def _plugin_fixtures() -> set[str]:
    source = Path(plugin.__file__).read_text()
    return set(re.findall(r"^def (scanpay_\w+)\(", source, flags=re.MULTILINE))


def test_readme_describes_every_public_fixture_of_the_plugin() -> None:
    readme = (EXAMPLE_DIR / "README.md").read_text()

    fixtures = _plugin_fixtures()

    assert {"scanpay_target", "scanpay_flow", "scanpay_clean", "scanpay_sims"} <= fixtures
    assert sorted(name for name in fixtures if f"`{name}`" not in readme) == []


def test_ci_snippets_parse_and_use_only_options_the_plugin_defines() -> None:
    source = Path(plugin.__file__).read_text()
    defined = set(re.findall(r'"(--scanpay-[a-z-]+)"', source))

    for name in SNIPPETS:
        text = (EXAMPLE_DIR / name).read_text()
        assert isinstance(yaml.safe_load(text), dict), name
        used = set(re.findall(r"(--scanpay-[a-z-]+)", text))
        assert used <= defined, (name, used - defined)
        assert "test_partner_cms.py" in text and plugin.TARGET_ENV in text, name
