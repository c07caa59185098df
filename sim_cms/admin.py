"""sim_cms's additions to the `/_sim` control API: EGM registry and states, QR display and
rotation, decided fundings (for reconciliation), dump.

The routes are added to the guarded control blueprint (`add_admin_routes`), so they share its
admin-token check. Each change is validated in full before anything is written, and audited
in the same transaction (see `egms.change_egm`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select

from sim_cms.context import CmsContext, cms
from sim_cms.egms import (
    change_egm,
    define_egm,
    egm_json,
    get_egm,
    list_egms,
    parse_change,
    parse_definition,
)
from sim_cms.ledger import ledger_summary
from sim_cms.models import Egm, FundingRecord
from sim_cms.qr_display import (
    display_json,
    parse_display,
    qr_status,
    register_display,
    rotate_due,
)
from simkit.clock import format_instant, parse_instant
from simkit.errors import BadRequest
from simkit.http import read_json_body


def _egm_dump(ctx: CmsContext, egm: Egm) -> dict[str, Any]:
    with ctx.db.read() as session:
        qr = qr_status(session, egm.id, ctx.clock.now()).to_json()
    return {**egm_json(egm), "qr": qr}


def egms_dump(ctx: CmsContext) -> list[dict[str, Any]]:
    """Every EGM with meter, state and QR state (what `GET /_sim/egms` and the dump show)."""
    with ctx.db.read() as session:
        egms = list_egms(session)
    return [_egm_dump(ctx, egm) for egm in egms]


def state_dump() -> dict[str, Any]:
    """The CMS part of `GET /_sim/state`: EGMs with meters, states and QR state, and the
    ledger's counts and totals (reconciliation, and the concurrency tests' credit count)."""
    ctx = cms()
    with ctx.db.read() as session:
        ledger = ledger_summary(session)
    return {"casino": ctx.settings.casino_name, "currency": ctx.settings.currency,
            "egms": egms_dump(ctx), "ledger": ledger}


def _since_arg() -> datetime | None:
    text = request.args.get("since")
    if not text:
        return None
    try:
        return parse_instant(text[:64])
    except (ValueError, OverflowError) as exc:
        raise BadRequest("since must be an ISO-8601 instant", field="since") from exc


def fundings_dump(ctx: CmsContext, since: datetime | None) -> list[dict[str, Any]]:
    """Every decided funding (oldest first, optionally from `since` on), for reconciliation
    against Trustly's payments: `{transactionId, egmId, amount, currency, outcome, ...}`."""
    statement = select(FundingRecord).order_by(FundingRecord.created_at)
    if since is not None:
        statement = statement.where(FundingRecord.created_at >= since)
    with ctx.db.read() as session:
        return [{"transactionId": r.transaction_id, "egmId": r.egm_id, "amount": r.amount,
                 "currency": r.currency, "outcome": r.outcome, "httpStatus": r.http_status,
                 "code": r.error_code, "ubai": r.ubai, "qrTokenId": r.qr_token_id,
                 "decidedAt": format_instant(r.created_at)}
                for r in session.scalars(statement)]


def add_admin_routes(bp: Blueprint) -> None:
    """Add the EGM and QR routes to the control blueprint (before it is registered)."""

    @bp.get("/fundings")
    def admin_list_fundings() -> Response:
        return jsonify({"fundings": fundings_dump(cms(), _since_arg())})

    @bp.get("/egms")
    def admin_list_egms() -> Response:
        return jsonify({"egms": egms_dump(cms())})

    @bp.get("/egms/<egm_id>")
    def admin_read_egm(egm_id: str) -> Response:
        ctx = cms()
        with ctx.db.read() as session:
            egm = get_egm(session, egm_id)
        return jsonify(_egm_dump(ctx, egm))

    @bp.put("/egms/<egm_id>")
    def admin_define_egm(egm_id: str) -> tuple[Response, int]:
        ctx = cms()
        definition = parse_definition(egm_id, read_json_body(request, ctx.settings.max_body_bytes))
        with ctx.db.write() as session:
            egm, created = define_egm(session, egm_id, definition, ctx.settings.currency,
                                      ctx.clock.now())
        return jsonify(egm_json(egm)), 201 if created else 200

    @bp.post("/egms/<egm_id>")
    def admin_change_egm(egm_id: str) -> Response:
        ctx = cms()
        change = parse_change(read_json_body(request, ctx.settings.max_body_bytes))
        with ctx.db.write() as session:
            egm = change_egm(session, egm_id, change, ctx.clock.now())
        return jsonify(egm_json(egm))

    @bp.post("/egms/<egm_id>/qr-display")
    def admin_show_qr(egm_id: str) -> tuple[Response, int]:
        ctx = cms()
        got = parse_display(read_json_body(request, ctx.settings.max_body_bytes))
        return jsonify(display_json(register_display(ctx, egm_id, got))), 201

    @bp.post("/qr/rotate")
    def admin_rotate_qr() -> Response:
        report = rotate_due(cms())
        return jsonify({"acquired": report.acquired, "failed": report.failed})
