"""sim_cms's additions to the `/_sim` control API: EGM registry and states, QR display and
rotation, decided fundings (for reconciliation), dump.

The routes are added to the guarded control blueprint (`add_admin_routes`), so they share its
admin-token check. Views only: each parses the request and calls one service function with
plain values (`egm_registry`, `control_state`, `qr_display`), which owns its transaction.
Each change is validated in full before anything is written, and audited in the same
transaction (see `egms.change_egm`).
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, jsonify, request

from sim_cms import egm_registry
from sim_cms.context import cms
from sim_cms.control_state import egm_dump, egms_dump, fundings_dump
from sim_cms.egms import parse_change, parse_definition
from sim_cms.qr_display import display_json, parse_display, register_display, rotate_due
from simkit.clock import parse_instant
from simkit.errors import BadRequest
from simkit.http import read_json_body


def _since_arg() -> datetime | None:
    text = request.args.get("since")
    if not text:
        return None
    try:
        return parse_instant(text[:64])
    except (ValueError, OverflowError) as exc:
        raise BadRequest("since must be an ISO-8601 instant", field="since") from exc


def add_admin_routes(bp: Blueprint) -> None:
    """Add the EGM and QR routes to the control blueprint (before it is registered)."""

    @bp.get("/fundings")
    def admin_list_fundings() -> Response:
        return jsonify({"fundings": fundings_dump(cms().db, _since_arg())})

    @bp.get("/egms")
    def admin_list_egms() -> Response:
        return jsonify({"egms": egms_dump(cms())})

    @bp.get("/egms/<egm_id>")
    def admin_read_egm(egm_id: str) -> Response:
        return jsonify(egm_dump(cms(), egm_id))

    @bp.put("/egms/<egm_id>")
    def admin_define_egm(egm_id: str) -> tuple[Response, int]:
        ctx = cms()
        definition = parse_definition(egm_id, read_json_body(request, ctx.settings.max_body_bytes))
        egm, created = egm_registry.define(ctx.db, egm_id, definition, ctx.settings.currency,
                                           ctx.clock.now())
        return jsonify(egm), 201 if created else 200

    @bp.post("/egms/<egm_id>")
    def admin_change_egm(egm_id: str) -> Response:
        ctx = cms()
        change = parse_change(read_json_body(request, ctx.settings.max_body_bytes))
        return jsonify(egm_registry.change(ctx.db, egm_id, change, ctx.clock.now()))

    @bp.post("/egms/<egm_id>/qr-display")
    def admin_show_qr(egm_id: str) -> tuple[Response, int]:
        ctx = cms()
        got = parse_display(read_json_body(request, ctx.settings.max_body_bytes))
        return jsonify(display_json(register_display(ctx, egm_id, got))), 201

    @bp.post("/qr/rotate")
    def admin_rotate_qr() -> Response:
        report = rotate_due(cms())
        return jsonify({"acquired": report.acquired, "failed": report.failed})
