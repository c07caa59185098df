"""TPAS's control routes, added to sim_trustly's guarded `/_sim` blueprint.

- `GET /_sim/payments?status=&merchantId=&since=&limit=`: payments, oldest first.
- `GET /_sim/payments/<paymentId>`: one payment with its event history.
- `POST /_sim/payments/recover` `{"all"?: bool}`: run the recovery sweep now; `all` also
  takes payments another worker holds (only right when no other worker is alive).
- `GET /_sim/reconciliation?since=`: TPAS's payments against each CMS's fundings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from sim_trustly.context import trustly
from sim_trustly.tpas import payments, state_machine
from sim_trustly.tpas.reconciliation import reconcile_service
from simkit.clock import parse_instant
from simkit.errors import BadRequest
from simkit.http import read_json_body

MAX_LIMIT = 100_000
_STATUSES = frozenset({*payments.OPEN, *payments.TERMINAL})


def _since() -> datetime | None:
    text = request.args.get("since")
    if not text:
        return None
    try:
        return parse_instant(text[:64])
    except (ValueError, OverflowError) as exc:
        raise BadRequest("since must be an ISO-8601 instant", field="since") from exc


def _limit() -> int:
    text = request.args.get("limit", "1000")
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}", field="limit")
    return int(text)


def _status() -> str | None:
    status = request.args.get("status") or None
    if status is not None and status not in _STATUSES:
        raise BadRequest(f"status must be one of {sorted(_STATUSES)}", field="status")
    return status


def payments_list() -> Response:
    """`GET /_sim/payments`: the payments TPAS knows, for reports and reconciliation."""
    rows = payments.list_payments(
        trustly().db, status=_status(), merchant_id=request.args.get("merchantId") or None,
        since=_since(), limit=_limit())
    return jsonify({"payments": [payments.admin_json(row) for row in rows]})


def payment_read(payment_id: str) -> Response:
    """`GET /_sim/payments/<id>`: one payment and every step it went through."""
    ctx = trustly()
    view = state_machine.get_payment(ctx, payment_id)
    row = payments.get(ctx.db, view.payment_id)
    assert row is not None
    return jsonify({**payments.admin_json(row), "events": payments.events_json(ctx.db, row.id)})


def payments_recover() -> Response:
    """`POST /_sim/payments/recover`: one recovery pass now, and what is still open after it."""
    ctx = trustly()
    body: Any = {}
    if request.get_data(cache=True).strip():
        body = read_json_body(request, ctx.settings.max_body_bytes)
    if not isinstance(body, dict) or not isinstance(body.get("all", False), bool):
        raise BadRequest('the body must be {} or {"all": true|false}')
    finished = state_machine.recover_payments(ctx, include_leased=body.get("all", False))
    return jsonify({"finished": finished, "open": payments.count_open(ctx.db)})


def reconciliation() -> Response:
    """`GET /_sim/reconciliation`: differences between TPAS and the CMSs it pays through."""
    return jsonify(reconcile_service(trustly(), since=_since()))


def add_tpas_admin_routes(bp: Blueprint) -> None:
    """Attach TPAS's routes to the control blueprint before it is registered."""
    bp.add_url_rule("/payments", view_func=payments_list, methods=["GET"])
    bp.add_url_rule("/payments/recover", view_func=payments_recover, methods=["POST"])
    bp.add_url_rule("/payments/<payment_id>", view_func=payment_read, methods=["GET"])
    bp.add_url_rule("/reconciliation", view_func=reconciliation, methods=["GET"])
