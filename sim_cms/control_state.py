"""What sim_cms's control API shows of its state: EGMs with their QR state, the decided
fundings, and the CMS part of `GET /_sim/state`.

Reads only, each in a transaction of its own; the views in `admin_api` serialise the
answers as they are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sim_cms import egm_registry
from sim_cms.context import CmsContext
from sim_cms.egms import egm_json, list_egms
from sim_cms.ledger import ledger_summary, list_fundings
from sim_cms.models import Egm
from sim_cms.qr_display import read_qr_status
from simkit.clock import format_instant
from simkit.db import Database


def _egm_dump(ctx: CmsContext, egm: Egm) -> dict[str, Any]:
    qr = read_qr_status(ctx.db, egm.id, ctx.clock.now()).to_json()
    return {**egm_json(egm), "qr": qr}


def egm_dump(ctx: CmsContext, egm_id: str) -> dict[str, Any]:
    """One EGM with meter, state and QR state (404 EGM_NOT_FOUND)."""
    return _egm_dump(ctx, egm_registry.read_egm(ctx.db, egm_id))


def egms_dump(ctx: CmsContext) -> list[dict[str, Any]]:
    """Every EGM with meter, state and QR state (what `GET /_sim/egms` and the dump show)."""
    with ctx.db.read() as session:
        egms = list_egms(session)
    return [_egm_dump(ctx, egm) for egm in egms]


def state_dump(ctx: CmsContext) -> dict[str, Any]:
    """The CMS part of `GET /_sim/state`: EGMs with meters, states and QR state, and the
    ledger's counts and totals (reconciliation, and the concurrency tests' credit count)."""
    with ctx.db.read() as session:
        ledger = ledger_summary(session)
    return {"casino": ctx.settings.casino_name, "currency": ctx.settings.currency,
            "egms": egms_dump(ctx), "ledger": ledger}


def fundings_dump(db: Database, since: datetime | None) -> list[dict[str, Any]]:
    """Every decided funding (oldest first, optionally from `since` on), for reconciliation
    against Trustly's payments: `{transactionId, egmId, amount, currency, outcome, ...}`."""
    with db.read() as session:
        return [{"transactionId": r.transaction_id, "egmId": r.egm_id, "amount": r.amount,
                 "currency": r.currency, "outcome": r.outcome, "httpStatus": r.http_status,
                 "code": r.error_code, "ubai": r.ubai, "qrTokenId": r.qr_token_id,
                 "decidedAt": format_instant(r.created_at)}
                for r in list_fundings(session, since)]
