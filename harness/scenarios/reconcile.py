"""Reconciliation: Trustly's credited total = the CMS's applied total = the EGM meter deltas."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from harness.scenarios.context import Context
from harness.scenarios.model import scenario
from sim_trustly.reconciliation import PAGE_LIMIT, summarize

REC_DUTY = ("Trustly Scan and Pay: settlement between Trustly and the casino; DESIGN §5 "
            "(double-entry ledger), §6 (Trustly total = CMS total = EGM meters)")


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


@scenario(
    "REC-002", "The whole run reconciles: every payment Trustly credited the CMS applied",
    requirement=REC_DUTY,
    tags=("reconciliation",), needs=("fundings",),
    steps=("Read Trustly's payments of this run (GET /_sim/payments?since=<run start> on "
           "the harness's Trustly) and the CMS's decided fundings (GET /_sim/fundings on the "
           "CMS's control API, with the CMS's own token), and reconcile them "
           "transactionId by transactionId.",
           "The only fundings no Trustly payment explains are the ones the harness posted "
           "itself, as TPAS, in the Funding API scenarios.",
           "Trustly's total plus the harness's own applied fundings equals the CMS's total.",
           "Where the CMS reports its ledger, it balances."))
def rec_002(ctx: Context) -> None:
    params = {"since": ctx.run.since} if ctx.run.since else {}
    payments = ctx.trustly_admin("/_sim/payments", limit=PAGE_LIMIT, **params)["payments"]
    answer = ctx.cms_control("GET", "/_sim/fundings", params=params)
    ctx.require("the CMS's fundings can be read", 200, answer.status_code)
    report = summarize(payments, answer.json().get("fundings") or [])
    direct = ctx.run.direct()
    differences = report.get("differences") or []
    mine = [d for d in differences
            if d.get("kind") == "APPLIED_NOT_CREDITED" and d.get("transactionId") in direct]
    others = [d for d in differences if d not in mine]
    ctx.expect("no difference but the harness's own fundings", [], others, money=True)
    applied_directly = sum(int(d.get("cmsAmount") or 0) for d in mine)
    ctx.expect("Trustly's total + the harness's fundings = the CMS's total",
               report.get("cmsTotal"), int(report.get("trustlyTotal") or 0) + applied_directly,
               money=True)
    state = ctx.cms_control("GET", "/_sim/state")
    ledger = state.json().get("ledger") if state.status_code == 200 else None
    if isinstance(ledger, dict) and "balanced" in ledger:
        ctx.expect("the CMS's ledger balances", True, ledger.get("balanced"), money=True)


SCENARIOS = (rec_001, rec_002)
