"""The Funding API: `POST /cws/v1/fundings` and `GET /cws/v1/fundings/<transactionId>`.

Both need a Bearer token (`POST /cws/v1/oauth/token`) granted the `fundings` scope.

POST `{"transactionId", "egmId", "amount", "currency", "ubai", "qrTokenId"}`:

- 201 `{"transactionId", "status": "APPLIED", "egmId", "amount", "currency", "creditMeter",
  "appliedAt"}` when the credit is on the meter.
- A decided rejection, stored under the transactionId (problem+json with `code` and
  `transactionId`): 404 EGM_NOT_FOUND, 503 EGM_OFFLINE, 409 EGM_BUSY, 409 EGM_DOOR_OPEN,
  409 EGM_TILT, 422 INVALID_AMOUNT, 422 QR_TOKEN_MISMATCH, 422 QR_TOKEN_USED (the token
  already paid another funding: one funding per QR token), 422 QR_TOKEN_EXPIRED (Trustly's
  expiry of the token plus `funding_grace_s` has passed), 422 CREDIT_LIMIT_EXCEEDED,
  422 DAILY_LIMIT_EXCEEDED (with `remaining`), checked in that order.
- The same transactionId with the same fields again: the stored status and body, byte for
  byte, with `Idempotent-Replayed: true`. With any field changed: 422 IDEMPOTENCY_KEY_REUSED
  (the stored outcome stays as it was). A retry that arrives while the first request is
  still being decided waits for it (the EGM row lock) and then gets the replay.
- 400 INVALID_REQUEST / VALIDATION_ERROR (`field` names the culprit), 413, 415: malformed,
  nothing decided or stored; the transactionId is still free. See `sim_cms.funding.requests`.

GET: 200 with the stored outcome, for a TPAS whose POST timed out:
`{"transactionId", "status": "APPLIED"|"REJECTED", "httpStatus", "code"? (rejections),
"egmId", "amount", "currency", "decidedAt", "response": <the original answer's body>}`;
404 FUNDING_NOT_FOUND when the id was never decided, so the same request is safe to retry;
400 VALIDATION_ERROR for an id that does not have the transactionId shape.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from sim_cms.context import cms
from sim_cms.funding import decide
from sim_cms.funding.requests import parse_funding_request, validate_transaction_id
from sim_cms.funding.status import funding_status
from sim_cms.oauth_api import require_access_token
from sim_cms.scopes import FUNDINGS, requires
from simkit.http import read_json_body

bp = Blueprint("cms_funding_api", __name__, url_prefix="/cws/v1")
bp.before_request(require_access_token)

REPLAY_HEADER = "Idempotent-Replayed"


@bp.post("/fundings")
@requires(bp.name, FUNDINGS)
def post_funding() -> Response:
    """Credit an EGM once per transactionId; answer the stored outcome to every retry."""
    ctx = cms()
    funding = parse_funding_request(read_json_body(request, ctx.settings.max_body_bytes))
    outcome = decide.post_transaction(ctx.db, funding, ctx.settings, ctx.clock.now())
    response = Response(outcome.body, status=outcome.http_status, mimetype=outcome.media_type)
    if outcome.replayed:
        response.headers[REPLAY_HEADER] = "true"
    return response


@bp.get("/fundings/<transaction_id>")
@requires(bp.name, FUNDINGS)
def get_funding(transaction_id: str) -> Response:
    """Tell a caller whether a transactionId was applied, rejected, or never decided."""
    validate_transaction_id(transaction_id)
    return jsonify(funding_status(cms().db, transaction_id))
