"""The partner example file catches the costly funding defects on a partner target.

examples/partner_ci/test_partner_cms.py is run, as a partner would, against the broken CMS
(tests/broken_cms) served over HTTP with one planted defect: the example's direct funding
tests must fail on it and name the test that saw it, while the same file passes on the
broken CMS with no defect (the egm-state hook declared, so only the `sim_only` test skips).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.broken_cms.defects import Defect
from tests.broken_cms.server import serve_broken_cms, write_partner_target

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "partner_ci" / "test_partner_cms.py"
TWICE = "test_a_funding_delivered_twice_is_applied_once"
AT_ONCE = "test_identical_fundings_at_once_credit_the_meter_once"


def run_example(defects: frozenset[Defect], workdir: Path) -> subprocess.CompletedProcess[str]:
    """The example file against the broken CMS with `defects`, as a partner target."""
    (workdir / EXAMPLE.name).write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    with serve_broken_cms(defects, f"sqlite:///{workdir / 'cms.db'}", workdir) as cms:
        target = write_partner_target(cms, workdir / "target.toml")
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rfs", "-p", "no:cacheprovider",
             EXAMPLE.name, "--scanpay-target", str(target)],
            cwd=workdir, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
@pytest.mark.parametrize(("defect", "caught_by"), [
    (Defect.REPLAY_OUTSIDE_LOCK, {AT_ONCE}),
    (Defect.NO_IDEMPOTENCY, {TWICE, AT_ONCE}),
])
def test_the_example_fails_on_a_cms_that_credits_a_funding_twice(
    tmp_path: Path, defect: Defect, caught_by: set[str],
) -> None:
    run = run_example(frozenset({defect}), tmp_path)

    failed = {line.split("::")[1].split()[0] for line in run.stdout.splitlines()
              if line.startswith("FAILED")}
    assert failed == caught_by, run.stdout[-4000:]


@pytest.mark.slow
def test_the_example_passes_on_the_broken_cms_without_defects(tmp_path: Path) -> None:
    run = run_example(frozenset(), tmp_path)

    assert run.returncode == 0, run.stdout[-4000:]
    assert "1 skipped" in run.stdout and "sim_only" in run.stdout, run.stdout[-2000:]
