"""Certify catches every planted defect of the docs-built CMS, and says what it cost.

Each case starts the CMS with one defect (`defects.DEFECTS`) and certifies it with the
scenario that caught it in a full-catalogue run (the others that caught it are listed for the
record; running one keeps the test fast). The verdict must be FAILED (exit 1), and the named
scenario must fail on a check whose message names the effect: the meter, or the spent QR.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs_cms.defects import DEFECTS, SLOW_ANSWER_S
from tests.docs_cms.harness_run import certify, docs_cms_target

pytestmark = pytest.mark.slow

# defect -> (scenario run here, the message its failing check starts with, every scenario
# of the catalogue that failed on it in a full run)
CAUGHT_BY: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "replay-outside-lock": ("FUND-009", "the meter went up once for 8 copies of one funding",
                            ("FUND-009", "FUND-010", "LIM-005", "REC-002")),
    "many-fundings-per-qr": ("QR-001", "one QR token paid once: the meter went up by one "
                             "amount", ("QR-001",)),
    "no-qr-replacement": ("QR-003", "the EGM shows a new QR in place of the spent one",
                          ("QR-003",)),
    "slow-answer": ("PAY-001", "the meter went up by the amount",
                    ("PAY-001", "PAY-002", "PAY-003", "PAY-004", "PAY-005", "SCAN-005",
                     "FUND-009", "FUND-010", "FUND-011", "FUND-013", "QR-003", "LIM-003",
                     "LIM-005", "REC-001", "REC-002")),
    "accept-expired-qr": ("QR-002", "an expired QR token moved no money", ("QR-002",)),
    "no-daily-limit": ("LIM-007", "the meter went up by the one allowed funding (1000) alone",
                       ("LIM-002", "LIM-004", "LIM-005", "LIM-007")),
}


def test_every_defect_has_a_case() -> None:
    assert set(CAUGHT_BY) == set(DEFECTS)


@pytest.mark.parametrize("defect", sorted(CAUGHT_BY))
def test_certify_fails_the_defect_and_names_what_it_cost(defect: str, tmp_path: Path) -> None:
    scenario_id, message, _ = CAUGHT_BY[defect]
    # TPAS's read timeout below the slow answer's delay, as a partner's own setting may be.
    read_timeout_s = SLOW_ANSWER_S / 2

    with docs_cms_target(tmp_path, defect, read_timeout_s) as target:
        run = certify(target, tmp_path / "reports", only=[scenario_id])

    assert run.returncode == 1, run.console[-4000:]
    assert run.report["verdict"] == "FAILED"
    scenario = run.scenario(scenario_id)
    assert scenario["outcome"] == "failed", scenario
    assert scenario["reason"].startswith(message), scenario["reason"]
    failed = [c for c in scenario["checks"] if not c["passed"]]
    assert failed and failed[0]["description"] == message, failed
    # Every defect but the spent QR on the screen moves money the wrong way; the report says so.
    expected_kind = "protocol" if defect == "no-qr-replacement" else "money"
    assert failed[0]["kind"] == expected_kind, failed[0]


def test_fund_013_names_the_slow_answers_latency_and_the_read_timeout(tmp_path: Path) -> None:
    """The slow answer is caught as what it is, too: later than TPAS's read timeout."""
    read_timeout_s = SLOW_ANSWER_S / 2

    with docs_cms_target(tmp_path, "slow-answer", read_timeout_s) as target:
        run = certify(target, tmp_path / "reports", only=["FUND-013"])

    assert run.returncode == 1, run.console[-4000:]
    scenario = run.scenario("FUND-013")
    assert scenario["outcome"] == "failed", scenario
    late = f"every funding is answered within TPAS's read timeout ({read_timeout_s:g} s)"
    assert scenario["reason"].startswith(late), scenario["reason"]
    failed = [c for c in scenario["checks"] if not c["passed"]]
    assert [c["description"] for c in failed] == [late], failed
    assert f"past the {read_timeout_s:g} s read timeout" in failed[0]["observed"], failed[0]
