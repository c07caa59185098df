"""Reconciliation: Trustly's credited total = the CMS's applied total = the EGM meter deltas."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from harness.certify.scenarios.context import DEFINITE, Context
from harness.certify.scenarios.model import scenario

REC_DUTY = ("Trustly Scan and Pay: settlement between Trustly and the casino; "
            "docs/architecture.md §16 (Exactly once and the ledger: double entry; reconciliation, "
            "Trustly total = CMS total = EGM meters)")


@scenario(
    "REC-001", "Trustly's credited total equals the CMS's applied total and the meter deltas",
    requirement=REC_DUTY,
    tags=("reconciliation", "pay"),
    steps=("Three players pay on three EGMs (CREDITED); a fourth payment is refused by its "
           "daily limit (REJECTED_VOIDED).",
           "Sum what Trustly credited, per EGM (Trustly's payment records).",
           "Sum what the CMS applied, per EGM (its status inquiry for every transactionId).",
           "Sum the EGMs' meter deltas. The three agree, EGM by EGM."))
def rec_001(ctx: Context) -> None:
    egm_ids = ctx.egms(3)
    before = ctx.meters(egm_ids)
    payments: list[dict[str, Any]] = []
    for n, egm_id in enumerate(egm_ids):
        payments.append(ctx.pay(ctx.qr(egm_id).url, 1000 + 100 * n, username=ctx.player()))
    player = ctx.player()
    first = ctx.pay(ctx.qr(egm_ids[0]).url, 300, username=player)
    ubai = str(ctx.payment_record(str(first["paymentId"])).get("ubai"))
    ctx.cms.limit("PUT", ubai, {"dailyLimit": 300})
    payments += [first, ctx.pay(ctx.qr(egm_ids[0]).url, 200, username=player)]
    ctx.expect("four payments CREDITED, one REJECTED_VOIDED",
               ["CREDITED"] * 4 + ["REJECTED_VOIDED"], [p.get("status") for p in payments])
    trustly: dict[str, int] = defaultdict(int)
    cms: dict[str, int] = defaultdict(int)
    for payment in payments:
        record = ctx.payment_record(str(payment["paymentId"]))
        if record.get("status") == "CREDITED":
            trustly[str(record["egmId"])] += int(record["amount"])
        if payment.get("transactionId"):
            answer = ctx.cms.get_funding(str(payment["transactionId"]))
            found = answer.json() if answer.status_code == 200 else {}
            if found.get("status") == "APPLIED":
                cms[str(found.get("egmId"))] += int(found.get("amount", 0))
    after = ctx.meters(egm_ids)
    meters = {egm: after[egm] - before[egm] for egm in before if after[egm] != before[egm]}
    ctx.expect("Trustly's credited total = the CMS's applied total (per EGM)", dict(trustly),
               dict(cms), money=True)
    ctx.expect("the CMS's applied total = the meter deltas (per EGM)", dict(cms), meters,
               money=True)
    ctx.expect("the total is what the players paid", 1000 + 1100 + 1200 + 300,
               sum(meters.values()), money=True)


@dataclass
class _Ledger:
    """One side's money of this run, per transactionId and per EGM."""

    applied: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # per EGM
    differences: list[dict[str, Any]] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)


def _this_runs_payments(ctx: Context) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Trustly's records of the payments this run made, by transactionId; and the ids of
    payments that never reached a definite outcome."""
    by_transaction: dict[str, dict[str, Any]] = {}
    unsettled: list[str] = []
    for payment_id in sorted(ctx.run.payments()):
        record = ctx.payment_record(payment_id)
        if record.get("status") not in DEFINITE:
            unsettled.append(payment_id)
        if record.get("transactionId"):
            by_transaction[str(record["transactionId"])] = record
    return by_transaction, unsettled


def _applied(ctx: Context, transaction_id: str) -> dict[str, Any] | None:
    """The CMS's outcome of `transaction_id` when it says APPLIED (its status inquiry)."""
    answer = ctx.cms.get_funding(transaction_id)
    found = answer.json() if answer.status_code == 200 else {}
    return found if isinstance(found, dict) and found.get("status") == "APPLIED" else None


def _reconcile(ctx: Context) -> _Ledger:
    """Every transactionId of this run, Trustly's record against the CMS's inquiry."""
    payments, unsettled = _this_runs_payments(ctx)
    ledger = _Ledger(unsettled=unsettled)
    for transaction_id in sorted(set(payments) | ctx.run.direct()):
        applied, payment = _applied(ctx, transaction_id), payments.get(transaction_id)
        if applied is not None:
            ledger.applied[str(applied.get("egmId"))] += int(applied.get("amount") or 0)
        if payment is None:
            continue  # the harness's own funding: only the meters can contradict it
        credited = payment.get("status") == "CREDITED"
        seen = (applied.get("egmId"), applied.get("amount")) if applied else None
        if credited != (applied is not None) or (
                seen is not None and seen != (payment.get("egmId"), payment.get("amount"))):
            ledger.differences.append({
                "transactionId": transaction_id, "trustly": payment.get("status"),
                "trustlyAmount": payment.get("amount"), "cms": seen})
    return ledger


@scenario(
    "REC-002", "The whole run reconciles: Trustly's payments, the CMS's fundings and the meters",
    requirement=f"{REC_DUTY}. Scoped to what this run created (its payments and "
                "transactionIds), so data from earlier runs or other traffic before it never "
                "counts.",
    tags=("reconciliation",),
    steps=("For every payment this run made through Trustly, read Trustly's record (the "
           "harness's own Trustly) and ask the CMS's status inquiry for its transactionId: a "
           "CREDITED payment is APPLIED with the same EGM and amount, any other outcome is "
           "not applied.",
           "Ask the status inquiry for every transactionId the harness posted itself, as TPAS.",
           "The EGMs' meters went up since the run's first scenario by exactly what those "
           "APPLIED fundings add up to, EGM by EGM (a credit under no transactionId of the "
           "run shows here).",
           "Every payment of the run reached a definite outcome; where the CMS reports its "
           "ledger (fundings hook), it balances."))
def rec_002(ctx: Context) -> None:
    start = ctx.run.start_meters()
    ledger = _reconcile(ctx)
    now = ctx.meters(list(start))
    rises = {egm: now[egm] - start[egm] for egm in sorted(start) if now[egm] != start[egm]}
    applied = {egm: amount for egm, amount in sorted(ledger.applied.items()) if amount}
    unexplained = sum(rises.values()) - sum(applied.values())
    ctx.expect("the meters rose by exactly what this run's fundings applied",
               f"+{sum(applied.values())}", f"+{sum(rises.values())}"
               + (f" ({unexplained:+d} that no funding of this run explains)" if unexplained
                  else ""), ok=unexplained == 0, money=True)
    ctx.expect("EGM by EGM", applied, rises, money=True)
    ctx.expect("every payment Trustly credited the CMS applied, and nothing else",
               [], ledger.differences, money=True)
    ctx.expect("every payment of the run reached a definite outcome", [], ledger.unsettled)
    if ctx.target.has("fundings"):
        state = ctx.cms_control("GET", "/_sim/state")
        books = state.json().get("ledger") if state.status_code == 200 else None
        if isinstance(books, dict) and "balanced" in books:
            ctx.expect("the CMS's ledger balances", True, books.get("balanced"), money=True)


SCENARIOS = (rec_001, rec_002)
