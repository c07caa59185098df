"""The OpenAPI 3.1 document of sim_trustly's auth service, served at `GET /openapi.json`.

The same document is written to docs/api/trustly-auth.openapi.json; a test keeps the two equal
and validates real responses against it, so neither can drift from the code.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

bp = Blueprint("trustly_openapi", __name__)

_ID = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"}
_ERROR_REF = {"$ref": "#/components/schemas/TrustlyErrors"}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ERROR_REF}},
    }
    if headers:
        response["headers"] = headers
    return response


def _schemas() -> dict[str, Any]:
    return {
        "QrTokenRequest": {
            "type": "object",
            "required": ["merchantId", "egmId"],
            "properties": {
                "merchantId": {**_ID, "description": "The merchant the credential belongs to."},
                "egmId": {**_ID, "description": "The EGM (slot machine) that will show the QR."},
                "locationId": {**_ID, "description": "Optional casino location."},
            },
        },
        "QrTokenResponse": {
            "type": "object",
            "required": ["url", "token", "expiresAt"],
            "additionalProperties": False,
            "properties": {
                "url": {"type": "string", "format": "uri",
                        "description": "Render this as the QR code: `<base>/scan/<code>`."},
                "token": {"type": "string", "pattern": r"^[\w-]+\.[\w-]+\.[\w-]+$",
                          "description": "Signed JWT (typ qr+jwt) naming merchant and EGM."},
                "expiresAt": {
                    "oneOf": [
                        {"type": "string", "format": "date-time",
                         "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"},
                        {"type": "integer", "description": "Epoch milliseconds (option)."},
                    ],
                    "description": "Rotate the QR before this instant.",
                },
            },
        },
        "TrustlyErrors": {
            "type": "object",
            "required": ["errors"],
            "properties": {"errors": {
                "type": "array", "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["domain", "code", "message", "reason"],
                    "properties": {
                        "domain": {"type": "string"},
                        "code": {"type": "integer",
                                 "description": "200 bad field, 300 bad credentials, 310 "
                                                "merchant not allowed, 375 too many attempts."},
                        "message": {"type": "string"},
                        "reason": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$",
                                   "description": "Stable code (scanpay-sim extension)."},
                        "field": {"type": "string"},
                    },
                },
            }},
        },
    }


def _token_operation() -> dict[str, Any]:
    return {
        "operationId": "issueQrToken",
        "summary": "Issue a QR token for one EGM",
        "description": (
            "Authenticate with HTTP Basic accessId:accessKey. Five failed attempts for one "
            "accessId within 60 s lock it for 60 s (429 with Retry-After). Tokens live 300 s "
            "by default (configurable per merchant); rotate the QR before `expiresAt`."
        ),
        "security": [{"basicAuth": []}],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/QrTokenRequest"}}}},
        "responses": {
            "200": {"description": "Token issued", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/QrTokenResponse"}}}},
            "400": _error("A field is missing, of the wrong type, or the body is not JSON "
                          "(reason MISSING_FIELD, INVALID_FIELD, INVALID_REQUEST)."),
            "401": _error("Missing or wrong credentials (reason AUTHENTICATION_FAILED).",
                          {"WWW-Authenticate": {"required": True,
                                                "schema": {"type": "string"}}}),
            "403": _error("merchantId is not the credential's (MERCHANT_NOT_ALLOWED)."),
            "405": _error("Method not allowed (METHOD_NOT_ALLOWED)."),
            "413": _error("Body over 16 KiB (PAYLOAD_TOO_LARGE)."),
            "415": _error("Content-Type is not application/json (UNSUPPORTED_MEDIA_TYPE)."),
            "429": _error("Locked out after repeated failures (TOO_MANY_ATTEMPTS).",
                          {"Retry-After": {"required": True, "schema": {"type": "string"}}}),
            "500": _error("Injected fault or internal error."),
            "503": _error("Injected fault or no signing key available."),
        },
    }


def build_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the auth service."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "scanpay-sim Trustly auth service (QR Code API)",
            "version": "1.0.0",
            "description": "Simulated Trustly QR Code API. See docs/fidelity.md for which "
                           "behaviour follows Trustly's public documentation.",
        },
        "servers": [{"url": "http://127.0.0.1:8710"}],
        "paths": {"/auth-service/api/oauth2/qrcode/token": {"post": _token_operation()}},
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"basicAuth": {"type": "http", "scheme": "basic"}},
        },
    }


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """Serve the document."""
    return jsonify(build_document())


def write_document(path: str) -> None:
    """Write the document to `path` (how docs/api/trustly-auth.openapi.json is made)."""
    import json
    from pathlib import Path

    Path(path).write_text(json.dumps(build_document(), indent=2) + "\n", encoding="utf-8")


# python -m sim_trustly.auth_service.openapi docs/api/trustly-auth.openapi.json
if __name__ == "__main__":
    import sys

    write_document(sys.argv[1] if len(sys.argv) > 1 else "docs/api/trustly-auth.openapi.json")
