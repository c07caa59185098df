"""The load gates' judgement as pure functions (loadtests/gates.py): reconciliation of one run's
payments, fundings and meters, and the error-share and p95 gates. No Locust, no server."""

from __future__ import annotations

from typing import Any

from gates import Step, Thresholds, judge_steps, parse_step_p95, reconcile


def _payment(tid: str, amount: int, status: str = "CREDITED", egm: str = "R-0-0",
             qr: str | None = None) -> dict[str, Any]:
    return {"transactionId": tid, "paymentId": f"p{tid}", "amount": amount, "currency": "USD",
            "status": status, "egmId": egm, "qrCode": qr or f"q{tid}"}


def _funding(tid: str, amount: int, egm: str = "R-0-0") -> dict[str, Any]:
    return {"transactionId": tid, "amount": amount, "currency": "USD", "outcome": "APPLIED",
            "egmId": egm}


def _egm(meter: int, egm: str = "R-0-0") -> dict[str, Any]:
    return {"id": egm, "creditMeter": meter, "currency": "USD"}


def test_matching_sides_reconcile_exactly() -> None:
    result = reconcile([_payment("a", 100), _payment("b", 500), _payment("c", 9, "FAILED_VOIDED")],
                       [_funding("a", 100), _funding("b", 500)], [_egm(600)],
                       observed_credited=["a", "b"])
    assert result.exact, result.problems
    assert (result.trustly_total, result.cms_total, result.meters_total) == (600, 600, 600)


def test_a_transaction_applied_twice_is_a_double_credit() -> None:
    result = reconcile([_payment("a", 100)], [_funding("a", 100), _funding("a", 100)],
                       [_egm(200)])
    assert not result.exact
    assert any(p.startswith("DOUBLE CREDIT") and "a" in p for p in result.problems)


def test_a_qr_credited_twice_and_an_accepted_replay_are_double_credits() -> None:
    result = reconcile([_payment("a", 100, qr="q"), _payment("b", 100, qr="q")],
                       [_funding("a", 100), _funding("b", 100)], [_egm(200)],
                       replays_accepted=1)
    doubles = [p for p in result.problems if p.startswith("DOUBLE CREDIT")]
    assert len(doubles) == 2, result.problems


def test_a_meter_off_by_one_payment_or_an_open_payment_is_a_mismatch() -> None:
    assert not reconcile([_payment("a", 100)], [_funding("a", 100)], [_egm(200)]).exact
    stuck = reconcile([_payment("a", 100, "FUNDING")], [], [_egm(0)])
    assert any("still open" in p for p in stuck.problems)


def test_a_payment_a_player_saw_credited_must_be_credited() -> None:
    result = reconcile([], [], [_egm(0)], observed_credited=["ghost"])
    assert any("players saw CREDITED" in p for p in result.problems)


def test_error_share_and_step_p95_gates() -> None:
    steps = [Step("Phone->Trustly GET /api/v1/scan/[code]", 100, 0, 12.0),
             Step("player: scan to a definite outcome", 100, 2, 900.0)]
    passed, failed = judge_steps(steps, Thresholds(0.05, 1000.0))
    assert not failed and len(passed) == 3
    _, failed = judge_steps(steps, Thresholds(0.005, 1000.0, parse_step_p95("scan to=500")))
    assert [line.split()[0] for line in failed] == ["error", "p95"]  # 1% > 0.5%; 900 > 500
    assert "player: scan to" in failed[1]
