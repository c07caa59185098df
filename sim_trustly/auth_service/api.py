"""The QR Code API blueprint: `POST /auth-service/api/oauth2/qrcode/token`.

Order of checks: credentials first (so an unauthenticated caller learns nothing about bodies
or merchants), then media type, size and shape of the body, then the merchant.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from sim_trustly.auth_service.issuance import authenticate, issue_for_merchant, parse_token_request
from sim_trustly.context import trustly
from sim_trustly.errors import AUTH_CHALLENGE
from simkit.errors import Unauthorized
from simkit.http import parse_basic_auth, read_json_body

bp = Blueprint("auth_service", __name__, url_prefix="/auth-service/api/oauth2")


@bp.post("/qrcode/token")
def issue_qrcode_token() -> tuple[Response, int]:
    """Issue a QR token for one EGM of the authenticated merchant."""
    ctx = trustly()
    basic = parse_basic_auth(request.headers.get("Authorization"))
    if basic is None:
        raise Unauthorized(
            "HTTP Basic credentials (accessId:accessKey) are required",
            challenge=AUTH_CHALLENGE, code="AUTHENTICATION_FAILED",
        )
    caller = authenticate(ctx.db, *basic, ctx.clock.now(), ctx.lockout,
                          source=request.remote_addr)
    token_request = parse_token_request(read_json_body(request, ctx.settings.max_body_bytes))
    issued = issue_for_merchant(
        ctx.db, caller, token_request, ctx.settings, clock=ctx.clock, keyrings=ctx.keyrings
    )
    return jsonify(issued.to_json()), 200
