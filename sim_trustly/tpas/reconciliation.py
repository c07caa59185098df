"""Reconciliation: TPAS's credited payments against the CMS's applied fundings, per EGM.

`reconcile` is a pure function of two lists, so the harness, the control API and tests all
judge the same way. Both sides are matched by transactionId (TPAS's idempotency key):

- CREDITED_NOT_APPLIED: TPAS says credited, the CMS has no applied funding under the id.
- APPLIED_NOT_CREDITED: the CMS applied it, TPAS does not say CREDITED (voided, still in
  FUNDING, or no such payment at all).
- AMOUNT_MISMATCH / EGM_MISMATCH: both say so, but not the same amount (or currency) or EGM.

An empty list means Trustly's total equals the CMS's total, EGM by EGM.

The CMS side comes over HTTP from the reference CMS's control API (`GET /_sim/fundings`,
admin token); the sims never read each other's databases.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from sim_trustly.cms_client.adapters import profile_for
from sim_trustly.context import TrustlyContext
from sim_trustly.tpas import payments
from simkit.clock import format_instant
from simkit.money import MinorUnits
from simkit.tls import tls_context

CREDITED = "CREDITED"
APPLIED = "APPLIED"
PAGE_LIMIT = 100_000
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Difference:
    """One transactionId on which Trustly and the CMS disagree."""

    kind: str
    transaction_id: str
    egm_id: str
    trustly_amount: MinorUnits | None = None
    cms_amount: MinorUnits | None = None
    trustly_status: str | None = None
    cms_outcome: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The difference as reports show it."""
        return {"kind": self.kind, "transactionId": self.transaction_id, "egmId": self.egm_id,
                "trustlyAmount": self.trustly_amount, "cmsAmount": self.cms_amount,
                "trustlyStatus": self.trustly_status, "cmsOutcome": self.cms_outcome}


def _by_id(items: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(item["transactionId"]): item for item in items}


def _compare(tid: str, t: Mapping[str, Any] | None, c: Mapping[str, Any] | None
             ) -> Difference | None:
    credited = t is not None and t.get("status") == CREDITED
    applied = c is not None and c.get("outcome") == APPLIED
    if not credited and not applied:
        return None
    egm = str((t or c or {}).get("egmId"))
    diff = Difference(
        "", tid, egm, trustly_amount=t.get("amount") if t else None,
        cms_amount=c.get("amount") if c else None,
        trustly_status=t.get("status") if t else None, cms_outcome=c.get("outcome") if c else None)
    if credited and not applied:
        return _kind(diff, "CREDITED_NOT_APPLIED")
    if applied and not credited:
        return _kind(diff, "APPLIED_NOT_CREDITED")
    assert t is not None and c is not None
    if (t.get("amount"), t.get("currency")) != (c.get("amount"), c.get("currency")):
        return _kind(diff, "AMOUNT_MISMATCH")
    if t.get("egmId") != c.get("egmId"):
        return _kind(diff, "EGM_MISMATCH")
    return None


def _kind(diff: Difference, kind: str) -> Difference:
    return Difference(kind, diff.transaction_id, diff.egm_id, diff.trustly_amount,
                      diff.cms_amount, diff.trustly_status, diff.cms_outcome)


def reconcile(
    trustly_payments: Iterable[Mapping[str, Any]], cms_fundings: Iterable[Mapping[str, Any]],
) -> list[Difference]:
    """Every disagreement between TPAS's payments and the CMS's funding records.

    `trustly_payments`: `{"transactionId", "egmId", "amount", "currency", "status"}` each;
    `cms_fundings`: `{"transactionId", "egmId", "amount", "currency", "outcome"}` each.
    Payments and fundings that neither credited nor applied anything are never differences.
    """
    trustly, cms = _by_id(trustly_payments), _by_id(cms_fundings)
    found = (_compare(tid, trustly.get(tid), cms.get(tid)) for tid in sorted({*trustly, *cms}))
    return [diff for diff in found if diff is not None]


def summarize(
    trustly_payments: Sequence[Mapping[str, Any]], cms_fundings: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The reconciliation report: differences, both totals, and both totals per EGM."""
    per_egm: dict[str, dict[str, int]] = defaultdict(lambda: {"trustly": 0, "cms": 0})
    for p in trustly_payments:
        if p.get("status") == CREDITED:
            per_egm[str(p["egmId"])]["trustly"] += int(p["amount"])
    for f in cms_fundings:
        if f.get("outcome") == APPLIED:
            per_egm[str(f["egmId"])]["cms"] += int(f["amount"])
    differences = reconcile(trustly_payments, cms_fundings)
    return {
        "reconciled": not differences,
        "differences": [d.to_json() for d in differences],
        "trustlyTotal": sum(v["trustly"] for v in per_egm.values()),
        "cmsTotal": sum(v["cms"] for v in per_egm.values()),
        "perEgm": dict(sorted(per_egm.items())),
    }


def _get_json(base_url: str, path: str, admin_token: str, transport: Any,
              params: dict[str, str]) -> Any:
    with httpx.Client(base_url=base_url, transport=transport, timeout=TIMEOUT_S,
                      verify=tls_context()) as client:
        response = client.get(path, params=params,
                              headers={"Authorization": f"Bearer {admin_token}"})
    response.raise_for_status()
    return response.json()


def fetch_cms_fundings(
    cms_base: str, admin_token: str, *, transport: Any = None, since: str | None = None,
) -> list[dict[str, Any]]:
    """The CMS's decided fundings from its control API (`GET /_sim/fundings`)."""
    params = {"since": since} if since else {}
    fundings: list[dict[str, Any]] = _get_json(cms_base, "/_sim/fundings", admin_token,
                                               transport, params)["fundings"]
    return fundings


def reconcile_service(ctx: TrustlyContext, *, since: datetime | None = None) -> dict[str, Any]:
    """sim_trustly's own view (`GET /_sim/reconciliation`): its payments against each CMS.

    Payments are grouped by the CMS their merchant's profile names (the default profile's
    CMS is always asked, so a funding no payment explains is still found); each CMS is read
    over HTTP with this sim's admin token. A CMS that cannot be read is listed in `errors`
    and the report is not `reconciled`.
    """
    rows = payments.list_payments(ctx.db, since=since, limit=PAGE_LIMIT)
    since_wire = format_instant(since) if since else None
    groups: dict[str, list[dict[str, Any]]] = {ctx.settings.cms.base_url: []}
    for row in rows:
        base = profile_for(ctx.settings, row.merchant_id).base_url
        groups.setdefault(base, []).append(payments.admin_json(row))
    trustly_side: list[Mapping[str, Any]] = []
    cms_side: list[Mapping[str, Any]] = []
    errors: list[dict[str, str]] = []
    for base, group in groups.items():
        trustly_side.extend(group)
        try:
            cms_side.extend(fetch_cms_fundings(base, ctx.settings.admin_token or "",
                                               transport=ctx.cms_transport, since=since_wire))
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            errors.append({"cms": base, "error": f"{type(exc).__name__}: {exc}"})
    report = summarize(trustly_side, cms_side)
    report["errors"] = errors
    report["reconciled"] = report["reconciled"] and not errors
    return report
