"""Reconciliation: every disagreement between TPAS's payments and the CMS's fundings is listed,
and a run where the sims agree comes out empty; plus TPAS's control routes behind it.
"""

from __future__ import annotations

from typing import Any

import pytest

from sim_trustly.tpas.reconciliation import reconcile, summarize
from tests.api.tpas_support import ADMIN, EGM, Casino, CasinoFactory, make_casino

__all__ = ["make_casino"]  # the fixture, used by name


def payment(tid: str, status: str = "CREDITED", amount: int = 2000, egm: str = EGM,
            currency: str = "USD") -> dict[str, Any]:
    return {"transactionId": tid, "status": status, "amount": amount, "egmId": egm,
            "currency": currency}


def funding(tid: str, outcome: str = "APPLIED", amount: int = 2000, egm: str = EGM,
            currency: str = "USD") -> dict[str, Any]:
    return {"transactionId": tid, "outcome": outcome, "amount": amount, "egmId": egm,
            "currency": currency}


def kinds(trustly: list[dict[str, Any]], cms: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d.kind, d.transaction_id) for d in reconcile(trustly, cms)]


def test_agreeing_sides_have_no_differences() -> None:
    trustly = [payment("a"), payment("b", "REJECTED_VOIDED"), payment("c", "FAILED_VOIDED")]
    cms = [funding("a"), funding("b", "REJECTED")]
    assert kinds(trustly, cms) == []
    assert kinds([], []) == []


def test_a_credit_the_cms_never_applied_is_listed() -> None:
    assert kinds([payment("a")], []) == [("CREDITED_NOT_APPLIED", "a")]
    assert kinds([payment("a")], [funding("a", "REJECTED")]) == [("CREDITED_NOT_APPLIED", "a")]


@pytest.mark.parametrize("status", ["REJECTED_VOIDED", "FAILED_VOIDED", "FUNDING", None])
def test_an_applied_funding_tpas_does_not_call_credited_is_listed(status: str | None) -> None:
    trustly = [payment("a", status)] if status else []
    (diff,) = reconcile(trustly, [funding("a")])
    assert (diff.kind, diff.trustly_status, diff.cms_outcome) == (
        "APPLIED_NOT_CREDITED", status, "APPLIED")


def test_amount_currency_and_egm_mismatches_are_listed() -> None:
    assert kinds([payment("a", amount=2000)], [funding("a", amount=2500)]) == [
        ("AMOUNT_MISMATCH", "a")]
    assert kinds([payment("a")], [funding("a", currency="EUR")]) == [("AMOUNT_MISMATCH", "a")]
    assert kinds([payment("a")], [funding("a", egm="EGM-002")]) == [("EGM_MISMATCH", "a")]


def test_the_summary_totals_both_sides_per_egm() -> None:
    trustly = [payment("a"), payment("b", egm="EGM-002", amount=500), payment("x", "FUNDING")]
    cms = [funding("a"), funding("b", egm="EGM-002", amount=500), funding("z", amount=7)]
    report = summarize(trustly, cms)
    assert report["trustlyTotal"] == 2500 and report["cmsTotal"] == 2507
    assert report["perEgm"] == {EGM: {"trustly": 2000, "cms": 2007},
                                "EGM-002": {"trustly": 500, "cms": 500}}
    assert not report["reconciled"]
    assert [d["transactionId"] for d in report["differences"]] == ["z"]


@pytest.fixture
def casino(make_casino: CasinoFactory) -> Casino:
    return make_casino()


@pytest.mark.db
def test_a_clean_run_reconciles_over_the_control_api(casino: Casino) -> None:
    casino.pay(casino.show_qr(), 2000)
    casino.pay(casino.show_qr("EGM-002"), 3000)
    casino.pay(casino.show_qr(), 1000, password="LoginError")
    response = casino.trustly.get("/_sim/reconciliation", headers=ADMIN)
    assert response.status_code == 200
    report = response.get_json()
    assert report["reconciled"] and report["differences"] == [] and report["errors"] == []
    assert report["trustlyTotal"] == report["cmsTotal"] == 5000
    assert report["perEgm"][EGM] == {"trustly": 2000, "cms": 2000}


@pytest.mark.db
def test_a_credit_applied_behind_tpass_back_shows_up(casino: Casino) -> None:
    casino.pay(casino.show_qr())
    code = casino.show_qr()
    response = casino.cms.post("/cws/v1/fundings", headers=casino.bearer, json={
        "transactionId": "rogue-1", "egmId": EGM, "amount": 700, "currency": "USD",
        "ubai": "ubai-rogue", "qrTokenId": code})
    assert response.status_code == 201
    report = casino.reconciliation()
    assert not report["reconciled"]
    assert [(d["kind"], d["transactionId"], d["cmsAmount"]) for d in report["differences"]] == [
        ("APPLIED_NOT_CREDITED", "rogue-1", 700)]


@pytest.mark.db
def test_an_unreadable_cms_never_looks_reconciled(make_casino: CasinoFactory) -> None:
    casino = make_casino(admin_token="not-the-cms-admin-token")  # the CMS answers 401
    report = casino.reconciliation()
    assert report["differences"] == [] and not report["reconciled"]
    assert "401" in report["errors"][0]["error"]


@pytest.mark.db
def test_cms_fundings_need_the_admin_token_and_filter_by_time(casino: Casino) -> None:
    assert casino.cms.get("/_sim/fundings").status_code == 401
    casino.pay(casino.show_qr())
    later = "2030-01-01T00:00:00Z"
    assert casino.cms.get(f"/_sim/fundings?since={later}", headers=ADMIN).get_json() == {
        "fundings": []}
    (record,) = casino.cms_fundings()
    assert {"transactionId", "egmId", "amount", "currency", "outcome"} <= set(record)
    assert casino.cms.get("/_sim/fundings?since=yesterday", headers=ADMIN).status_code == 400


@pytest.mark.db
def test_payments_control_routes_list_show_and_recover(casino: Casino) -> None:
    view = casino.pay(casino.show_qr())
    listed = casino.trustly.get("/_sim/payments?status=CREDITED", headers=ADMIN).get_json()
    assert [p["paymentId"] for p in listed["payments"]] == [view.payment_id]
    assert casino.trustly.get("/_sim/payments?status=NOPE", headers=ADMIN).status_code == 400
    shown = casino.trustly.get(f"/_sim/payments/{view.payment_id}", headers=ADMIN).get_json()
    assert shown["events"][-1]["kind"] == "CREDITED" and shown["attempts"] == 1
    recovered = casino.trustly.post("/_sim/payments/recover", json={"all": True}, headers=ADMIN)
    assert recovered.get_json() == {"finished": 0, "open": 0}
