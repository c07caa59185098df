"""The runner names a failed scenario's money check first, whatever order it was recorded in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.certify.results import Check
from harness.certify.runner import run_scenario
from harness.certify.scenarios.context import Context, RunState
from harness.certify.scenarios.model import Scenario
from harness.targets import Target, embedded_spec, open_target


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    with open_target(embedded_spec()) as opened:
        yield opened


def _scenario(run: object) -> Scenario:
    return Scenario(id="TST-001", title="Two checks fail", requirement="Money first.",
                    tags=("test",), needs=(), steps=("fund twice",), run=run)  # type: ignore[arg-type]


def test_a_failed_money_check_is_the_reason_even_after_a_shape_check(target: Target) -> None:
    def run(ctx: Context) -> None:
        ctx.expect("the second copy is a replay", 200, 201)
        ctx.checks.append(Check("the meter went up once", False, "+2000", "+4000",
                                kind="money"))

    result = run_scenario(target, _scenario(run), RunState("t1"))
    assert result.outcome == "failed"
    assert result.reason == "the meter went up once: expected +2000, observed +4000"


def test_without_a_money_check_the_first_failed_check_is_the_reason(target: Target) -> None:
    def run(ctx: Context) -> None:
        ctx.expect("answered", 200, 200)
        ctx.expect("the second copy is a replay", 200, 201)
        ctx.expect("the error code", "X", "Y")

    result = run_scenario(target, _scenario(run), RunState("t2"))
    assert result.reason == "the second copy is a replay: expected 200, observed 201"
