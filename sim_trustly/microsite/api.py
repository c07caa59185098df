"""The microsite's JSON twin for headless drivers (harness, load tests, partners' CI).

- `GET  /api/v1/scan/<code>`: what the scan page shows (`state_machine.ScanView.to_json`: state,
  egmId, casino, suggestedAmounts, expiresAt, payment);
  404 `QR_CODE_UNKNOWN` for a code Trustly never issued.
- `POST /api/v1/scan/<code>/payments`: pay; 201 with the payment once it has a definite
  outcome (CREDITED, REJECTED_VOIDED, FAILED_VOIDED), 202 with the same shape while it is
  still on its way (the CMS did not answer; the recovery sweep finishes it). Errors are
  Trustly-dialect bodies: 404/409/410/403 for the code, 400/413/415 for the request.
- `GET  /api/v1/payments/<paymentId>`: the payment again (404 `PAYMENT_NOT_FOUND`).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, url_for

from sim_trustly.context import trustly
from sim_trustly.microsite.security import add_security_headers
from sim_trustly.tpas import state_machine
from simkit.http import read_json_body

bp = Blueprint("microsite_api", __name__, url_prefix="/api/v1")
bp.after_request(add_security_headers)

NO_STORE = {"Cache-Control": "no-store"}


@bp.get("/scan/<code>")
def describe(code: str) -> Response:
    """The scan's state and what a payment form needs (404 for an unknown code)."""
    scan = state_machine.describe_scan(trustly(), code)
    if scan.state == "UNKNOWN":
        raise state_machine.QrCodeUnknown()
    return _no_store(jsonify(scan.to_json()))


@bp.post("/scan/<code>/payments")
def pay(code: str) -> tuple[Response, int]:
    """Pay with the scanned code: 201 when the outcome is definite, else 202."""
    ctx = trustly()
    body = read_json_body(request, ctx.settings.max_body_bytes)
    payment = state_machine.pay_with_qr(ctx, code, state_machine.parse_payment_request(body))
    response = _no_store(jsonify(payment.to_json()))
    response.headers["Location"] = url_for(".payment", payment_id=payment.payment_id)
    return response, 201 if payment.definite else 202


@bp.get("/payments/<payment_id>")
def payment(payment_id: str) -> Response:
    """A payment as it stands now."""
    return _no_store(jsonify(state_machine.get_payment(trustly(), payment_id).to_json()))


def _no_store(response: Response) -> Response:
    response.headers.update(NO_STORE)
    return response
