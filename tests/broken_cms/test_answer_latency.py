"""FUND-013 fails a CMS whose fundings are answered after TPAS's read timeout, and only then.

Before FUND-013 a CMS that answered every funding past TPAS's read timeout, but was otherwise
correct and idempotent, passed the whole catalogue (slowly: each of its payments cost TPAS a
timeout, an inquiry and a retry). Here, in process (the broken CMS's wiring, no gunicorn):
the product as shipped made late by its own faults hook (every funding held 600 ms, past a
0.3 s read timeout), the broken CMS's slow-answer defect (1 s) under a 0.5 s read timeout,
and the product on time, which must pass with the same short timeout.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from harness.certify.results import ScenarioResult
from harness.certify.runner import run_scenario
from harness.certify.scenarios import by_id
from harness.certify.scenarios.context import RunState
from harness.targets import Target
from tests.broken_cms.defects import Defect
from tests.broken_cms.funding import SLOW_ANSWER_S
from tests.broken_cms.inprocess import broken_target

pytestmark = pytest.mark.db

LATE_MS = 600


def _with_read_timeout(target: Target, seconds: float) -> Target:
    """The target as a partner file with `read_timeout_s = seconds` would describe it."""
    return replace(target, cms_profile=replace(target.cms_profile, read_timeout_s=seconds))


def _fund_013(target: Target) -> ScenarioResult:
    return run_scenario(target, by_id()["FUND-013"], RunState("lat"))


def _late_check(result: ScenarioResult) -> str:
    failed = [check for check in result.checks if not check.passed]
    assert result.outcome == "failed", (result.outcome, result.reason)
    assert [check.description for check in failed] == [
        "every funding is answered within TPAS's read timeout "
        f"({_timeout_of(result)} s)"], failed
    return failed[0].observed


def _timeout_of(result: ScenarioResult) -> str:
    return next(check.description for check in result.checks
                if "read timeout" in check.description).rpartition("(")[2].split(" ")[0]


def test_a_correct_cms_answering_every_funding_late_fails_naming_latency_and_timeout(
    tmp_path: Path,
) -> None:
    with broken_target(frozenset(), tmp_path) as target:
        control = target.cms_control
        assert control is not None
        rule = {"method": "POST", "path": target.cms_profile.paths.fundings, "action": "delay",
                "delayMs": LATE_MS, "times": None}
        assert control.call("POST", "/_sim/faults", json=rule).status_code == 201
        result = _fund_013(_with_read_timeout(target, 0.3))
        control.call("DELETE", "/_sim/faults")
    observed = _late_check(result)
    assert _timeout_of(result) == "0.3"
    assert "past the 0.3 s read timeout: TPAS would have taken it for lost" in observed
    slowest = float(observed.removeprefix("slowest ").split(" ")[0])
    assert slowest >= LATE_MS / 1000, observed
    # The money moved once per funding (the CMS is idempotent, only late): the reason is the
    # latency, and the scenario stopped at the first late answer.
    assert result.reason.startswith("every funding is answered within TPAS's read timeout")
    assert [c.passed for c in result.checks if c.kind == "money"] == [True]


def test_the_broken_cms_slow_answer_defect_fails_fund_013(tmp_path: Path) -> None:
    with broken_target(frozenset({Defect.SLOW_ANSWER}), tmp_path) as target:
        result = _fund_013(_with_read_timeout(target, SLOW_ANSWER_S / 2))
    observed = _late_check(result)
    assert f"past the {SLOW_ANSWER_S / 2:g} s read timeout" in observed, observed


def test_the_product_answers_within_a_short_read_timeout(tmp_path: Path) -> None:
    with broken_target(frozenset(), tmp_path) as target:
        result = _fund_013(_with_read_timeout(target, SLOW_ANSWER_S / 2))
    assert result.outcome == "passed", (result.reason, result.checks)
    assert [c.description for c in result.checks][-1] == (
        f"every funding is answered within TPAS's read timeout ({SLOW_ANSWER_S / 2:g} s)")
