"""The CWS EGM endpoints: read EGMs, and force a QR acquisition for one (Bearer-protected,
scope `egms`).

Thin views: parse, call one service function with plain values (`egm_registry`,
`qr_display`), which owns its transaction, serialise. A Trustly failure is a decided answer
of this API (502, or 503 with Retry-After when Trustly said when to come back), never a 500.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from sim_cms import egm_registry, oauth_api
from sim_cms.context import cms
from sim_cms.qr_display import acquire, display_json, read_qr_status
from sim_cms.scopes import EGMS, requires
from sim_cms.trustly_client import TrustlyUnavailable
from simkit.errors import SimError

bp = Blueprint("cms_egms_api", __name__, url_prefix="/cws/v1/egms")
bp.before_request(oauth_api.require_access_token)


@bp.get("")
@requires(bp.name, EGMS)
def list_all() -> Response:
    """Every EGM of the casino with its state and meter."""
    return jsonify({"egms": egm_registry.list_all(cms().db)})


@bp.get("/<egm_id>")
@requires(bp.name, EGMS)
def read_one(egm_id: str) -> Response:
    """One EGM: state, credit meter and cap (404 EGM_NOT_FOUND)."""
    return jsonify(egm_registry.read_one(cms().db, egm_id))


@bp.post("/<egm_id>/qr")
@requires(bp.name, EGMS)
def force_qr(egm_id: str) -> Response:
    """Acquire a QR from Trustly for this EGM now and show it; answers what is now shown."""
    ctx = cms()
    try:
        display = acquire(ctx, egm_id)
    except TrustlyUnavailable as exc:
        raise trustly_problem(egm_id, exc) from exc
    return jsonify(display_json(display))


def trustly_problem(egm_id: str, exc: TrustlyUnavailable) -> SimError:
    """The problem for a failed acquisition: 503 + Retry-After when Trustly set one, else 502.

    `retryAfter` is when the CMS itself will try again (its backoff), so a caller polling the
    screen knows when a new QR can appear.
    """
    ctx = cms()
    status = read_qr_status(ctx.db, egm_id, ctx.clock.now())
    retry = status.retry_in_s if status.retry_in_s is not None else 1
    if exc.retry_after is not None:
        retry = max(retry, exc.retry_after)
        return SimError("TRUSTLY_UNAVAILABLE", 503, f"Trustly refused: {exc.describe()}",
                        headers={"Retry-After": str(retry)}, retryAfter=retry,
                        trustlyStatus=exc.status, reason=exc.kind, egmId=egm_id)
    return SimError("TRUSTLY_UNAVAILABLE", 502, f"Trustly failed: {exc.describe()}",
                    retryAfter=retry, trustlyStatus=exc.status, reason=exc.kind, egmId=egm_id)
