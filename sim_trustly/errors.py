"""Trustly's error dialect, and the one function that renders every sim_trustly error in it.

Body: `{"errors": [{"domain": ..., "code": <int>, "message": ..., "reason": <STABLE_CODE>}]}`.
`code` is the numeric code family Trustly's documentation uses; `reason` is our stable
UPPER_SNAKE code (an extension, see docs/fidelity.md) that tests and partners match on.
"""

from __future__ import annotations

import json

from flask import Response

from simkit.errors import SimError

DOMAIN = "auth-service"
AUTH_CHALLENGE = 'Basic realm="trustly-auth-service", charset="UTF-8"'

# Numeric code per stable reason; anything unlisted falls back on its HTTP status family.
NUMERIC_CODES: dict[str, int] = {
    "INVALID_REQUEST": 200,
    "MISSING_FIELD": 200,
    "INVALID_FIELD": 200,
    "UNSUPPORTED_MEDIA_TYPE": 200,
    "PAYLOAD_TOO_LARGE": 200,
    "METHOD_NOT_ALLOWED": 200,
    "NOT_FOUND": 404,
    "AUTHENTICATION_FAILED": 300,
    "MERCHANT_NOT_ALLOWED": 310,
    "TOO_MANY_ATTEMPTS": 375,
    "ADMIN_TOKEN_REQUIRED": 300,
    # The Pay (microsite, TPAS): our choice, the HTTP status as the numeric family.
    "QR_CODE_UNKNOWN": 404,
    "PAYMENT_NOT_FOUND": 404,
    "QR_CODE_USED": 409,
    "QR_CODE_EXPIRED": 410,
    "QR_CODE_INVALID": 410,
    "QR_CODE_WRONG_MERCHANT": 310,
    "INVALID_AMOUNT": 200,
    "INVALID_CURRENCY": 200,
}


def numeric_code(error: SimError) -> int:
    """The Trustly numeric code for `error`."""
    if error.code in NUMERIC_CODES:
        return NUMERIC_CODES[error.code]
    return 500 if error.http_status >= 500 else 200


def render_trustly_error(error: SimError) -> Response:
    """Render `error` in Trustly's dialect (status and headers are set by the handler)."""
    item: dict[str, object] = {
        "domain": error.extra.get("domain", DOMAIN),
        "code": numeric_code(error),
        "message": error.message,
        "reason": error.code,
    }
    if "field" in error.extra:
        item["field"] = error.extra["field"]
    return Response(json.dumps({"errors": [item]}), mimetype="application/json")
