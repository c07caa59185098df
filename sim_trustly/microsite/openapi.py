"""The OpenAPI 3.1 document of the phone's JSON API, served at `GET /api/v1/openapi.json`.

The microsite's pages are for people; `scanpay flow`, certify, the load tests and a partner's
own CI pay through their JSON twin (`sim_trustly.microsite.api`). The same document is written
to docs/api/trustly-microsite.openapi.json (`python -m sim_trustly.microsite.openapi`); a test
keeps the two equal and validates real answers against it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify

from sim_trustly.auth_service import openapi as auth_openapi

bp = Blueprint("microsite_openapi", __name__)

_INSTANT = {"type": "string", "format": "date-time",
            "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"}
_CODE = {"name": "code", "in": "path", "required": True,
         "description": "The code at the end of the QR's url (`<base>/scan/<code>`).",
         "schema": {"type": "string", "maxLength": 128}}
_ERRORS = {"$ref": "#/components/schemas/TrustlyErrors"}
_NO_STORE = {"Cache-Control": {"required": True, "schema": {"const": "no-store"},
                               "description": "Never cached: a payment changes."}}
PAYMENT_STATUSES = ("CREATED", "AUTHORIZED", "FUNDING", "CREDITED", "REJECTED_VOIDED",
                    "FAILED_VOIDED")
SCAN_STATES = ("ACTIVE", "USED", "EXPIRED", "WRONG_MERCHANT")


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERRORS}}}


def _payment() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["paymentId", "status", "transactionId", "egmId", "amount", "currency"],
        "additionalProperties": False,
        "properties": {
            "paymentId": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "status": {"enum": list(PAYMENT_STATUSES), "description":
                       "CREDITED, REJECTED_VOIDED and FAILED_VOIDED are definite; the others "
                       "mean the payment is still on its way (poll it)."},
            "transactionId": {"type": "string", "description":
                              "The id TPAS funds the CMS with (the CMS's idempotency key)."},
            "egmId": {"type": "string"},
            "amount": {"type": "integer", "minimum": 1, "description": "Minor units."},
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "reason": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$", "description":
                       "Why it was not credited (BANK_NOT_ENOUGH_FUNDS, EGM_BUSY, ...)."},
            "creditMeter": {"type": "integer", "description":
                            "The EGM's meter after the credit, as the CMS reported it."},
        },
    }


def _scan() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["code", "state", "egmId", "merchantId", "casino", "expiresAt", "payment",
                     "currency", "suggestedAmounts"],
        "additionalProperties": False,
        "properties": {
            "code": {"type": "string"},
            "state": {"enum": list(SCAN_STATES), "description":
                      "ACTIVE: the form can be paid; USED: a payment was made with it "
                      "(`payment`); EXPIRED; WRONG_MERCHANT: the merchant is gone."},
            "egmId": {"type": ["string", "null"]},
            "merchantId": {"type": ["string", "null"]},
            "casino": {"type": ["string", "null"]},
            "expiresAt": {"oneOf": [_INSTANT, {"type": "null"}]},
            "payment": {"oneOf": [{"$ref": "#/components/schemas/Payment"}, {"type": "null"}]},
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "suggestedAmounts": {"type": "array", "items": {"type": "integer", "minimum": 1}},
        },
    }


def _payment_request() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["amount", "currency", "bank"],
        "properties": {
            "amount": {"description": "Minor units as an integer, or a decimal string in major "
                                      "units (\"20.50\").",
                       "oneOf": [{"type": "integer", "minimum": 1}, {"type": "string"}]},
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "bank": {"type": "object", "required": ["username", "password"], "properties": {
                "username": {"type": "string", "minLength": 1},
                "password": {"type": "string", "minLength": 1, "description":
                             "The demo bank's keyphrases choose its answer (docs/fidelity.md)."},
            }},
        },
    }


def _paths() -> dict[str, Any]:
    payment = {"$ref": "#/components/schemas/Payment"}
    return {
        "/api/v1/scan/{code}": {"get": {
            "operationId": "describeScan", "summary": "What the scan page shows.",
            "parameters": [_CODE],
            "responses": {
                "200": {"description": "The scan.", "headers": _NO_STORE, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Scan"}}}},
                "404": _error("QR_CODE_UNKNOWN: Trustly never issued this code."),
            },
        }},
        "/api/v1/scan/{code}/payments": {"post": {
            "operationId": "pay", "summary": "Pay onto the QR's EGM.",
            "parameters": [_CODE],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/PaymentRequest"}}}},
            "responses": {
                "201": {"description": "The payment reached a definite outcome.",
                        "headers": _NO_STORE,
                        "content": {"application/json": {"schema": payment}}},
                "202": {"description": "Still on its way (the CMS did not answer yet): poll "
                                       "`GET /api/v1/payments/{paymentId}`.",
                        "headers": _NO_STORE,
                        "content": {"application/json": {"schema": payment}}},
                "400": _error("MISSING_FIELD, INVALID_FIELD, INVALID_AMOUNT, INVALID_JSON, "
                              "INVALID_REQUEST: nothing was claimed."),
                "403": _error("QR_CODE_WRONG_MERCHANT."),
                "404": _error("QR_CODE_UNKNOWN."),
                "409": _error("QR_CODE_USED: the QR already paid (or is paying)."),
                "410": _error("QR_CODE_EXPIRED or QR_CODE_INVALID."),
                "413": _error("The body is over the size limit."),
                "415": _error("The body is not JSON."),
                "422": _error("CURRENCY_NOT_SUPPORTED: refused before the QR is claimed."),
            },
        }},
        "/api/v1/payments/{paymentId}": {"get": {
            "operationId": "getPayment", "summary": "A payment as it stands now.",
            "parameters": [{"name": "paymentId", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "The payment.", "headers": _NO_STORE,
                        "content": {"application/json": {"schema": payment}}},
                "404": _error("PAYMENT_NOT_FOUND."),
            },
        }},
    }


def build_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the phone's JSON API."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "scanpay-sim Trustly microsite JSON API (the phone's side)",
            "version": "1.0.0",
            "description": "The JSON twin of the player's microsite: describe a scanned QR, "
                           "pay with it, read the payment. Ours, not Trustly's: a real "
                           "player uses Trustly's pages (docs/fidelity.md).",
        },
        "servers": [{"url": "http://127.0.0.1:8710"}],
        "paths": _paths(),
        "components": {"schemas": {
            "Scan": _scan(), "Payment": _payment(), "PaymentRequest": _payment_request(),
            "TrustlyErrors": auth_openapi.build_document()["components"]["schemas"][
                "TrustlyErrors"],
        }},
    }


@bp.get("/api/v1/openapi.json")
def openapi_document() -> Response:
    """Serve the document."""
    return jsonify(build_document())


def write_document(path: str) -> None:
    """Write the document to `path` (how docs/api/trustly-microsite.openapi.json is made)."""
    Path(path).write_text(json.dumps(build_document(), indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":  # python -m sim_trustly.microsite.openapi
    import sys

    write_document(sys.argv[1] if len(sys.argv) > 1 else
                   "docs/api/trustly-microsite.openapi.json")
