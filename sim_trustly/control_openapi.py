"""The OpenAPI 3.1 document of sim_trustly's control API (`/_sim/*`).

The kernel's routes (`simkit.control_openapi`) plus sim_trustly's own: merchants and signing
keys (`sim_trustly.admin_api`), TPAS's payments, recovery and reconciliation
(`sim_trustly.tpas.admin_api`), with errors in Trustly's dialect. Served at
`GET /_sim/openapi.json` behind the admin token like every control route, and written to
docs/api/trustly-control.openapi.json (`python -m sim_trustly.control_openapi`); a test keeps
the two equal and validates real answers against it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from sim_trustly.admin_api import KID_LIMIT, MERCHANT_LIMITS
from sim_trustly.auth_service import openapi as auth_openapi
from sim_trustly.microsite.openapi import build_document as microsite_document
from sim_trustly.settings import DEFAULT_PORT
from sim_trustly.tpas import payments
from sim_trustly.tpas.admin_api import MAX_LIMIT
from simkit import control_openapi as kernel
from simkit.control_openapi import INSTANT, json_body, json_ok, ref

PUBLISHED = "docs/api/trustly-control.openapi.json"
_STATUSES = sorted({*payments.OPEN, *payments.TERMINAL})


def error(status: int, reasons: list[str], description: str) -> dict[str, Any]:
    """A Trustly-dialect error answer whose `reason` is one of `reasons`."""
    narrowing = {"properties": {"errors": {"items": {"properties": {
        "reason": {"enum": reasons}}}}}}
    return {"description": f"{description} Reasons: {', '.join(reasons)}.",
            "content": {"application/json": {"schema": {
                "allOf": [ref("TrustlyErrors"), narrowing]}}}}


def _body_errors(*codes: str) -> dict[str, Any]:
    """What a route reading its body with `read_json_body` may refuse besides its own 400s."""
    return {
        "400": error(400, ["INVALID_REQUEST", "INVALID_FIELD", "INVALID_CHARACTERS", *codes],
                     "A member missing, of the wrong type or too long, or the body is not "
                     "JSON; nothing changed."),
        "413": error(413, ["PAYLOAD_TOO_LARGE"], "The body is over the size limit."),
        "415": error(415, ["UNSUPPORTED_MEDIA_TYPE"], "Content-Type is not application/json."),
    }


def _schemas() -> dict[str, Any]:
    payment = microsite_document()["components"]["schemas"]["Payment"]
    admin_payment = {
        **payment,
        "required": [*payment["required"], "merchantId", "qrCode", "ubai", "attempts",
                     "createdAt", "updatedAt", "nextAttemptAt"],
        "properties": {
            **payment["properties"],
            "status": {"enum": _STATUSES},
            "merchantId": {"type": "string"}, "qrCode": {"type": "string"},
            "ubai": {"type": ["string", "null"], "description": "The bank account the "
                     "payment was made from (null before the bank authorised it)."},
            "attempts": {"type": "integer", "minimum": 0,
                         "description": "Funding requests sent to the CMS so far."},
            "createdAt": INSTANT, "updatedAt": INSTANT,
            "nextAttemptAt": {"oneOf": [INSTANT, {"type": "null"}], "description": "While in "
                              "the future, a worker holds the payment (its lease)."},
            "events": {"type": "array", "description": "Every step, oldest first (only on "
                       "`GET /_sim/payments/{paymentId}`).",
                       "items": {"type": "object", "required": ["at", "kind", "detail"],
                                 "additionalProperties": False,
                                 "properties": {"at": INSTANT, "kind": {"type": "string"},
                                                "detail": {"type": "object"}}}},
        },
    }
    difference = {
        "type": "object", "additionalProperties": False,
        "required": ["kind", "transactionId", "egmId", "trustlyAmount", "cmsAmount",
                     "trustlyStatus", "cmsOutcome"],
        "properties": {
            "kind": {"type": "string"}, "transactionId": {"type": "string"},
            "egmId": {"type": "string"},
            "trustlyAmount": {"type": ["integer", "null"]},
            "cmsAmount": {"type": ["integer", "null"]},
            "trustlyStatus": {"type": ["string", "null"]},
            "cmsOutcome": {"type": ["string", "null"]}}}
    return {
        **kernel.kernel_schemas(),
        "TrustlyErrors": auth_openapi.build_document()["components"]["schemas"]["TrustlyErrors"],
        "State": {"type": "object", "required": ["clock", "faults"],
                  "additionalProperties": False,
                  "properties": {"clock": ref("Clock"),
                                 "faults": {"type": "array", "items": ref("FaultRuleShown")}}},
        "Merchant": {
            "type": "object", "required": ["merchantId", "accessId", "accessKey"],
            "description": "A merchant and its QR Code API credential; other members are "
                           "ignored.",
            "properties": {
                "merchantId": {"type": "string", "minLength": 1,
                               "maxLength": MERCHANT_LIMITS["merchantId"]},
                "accessId": {"type": "string", "minLength": 1,
                             "maxLength": MERCHANT_LIMITS["accessId"]},
                "accessKey": {"type": "string", "minLength": 1, "writeOnly": True},
                "name": {"type": "string", "maxLength": MERCHANT_LIMITS["name"],
                         "description": "Defaults to merchantId."},
                "tokenLifetimeS": {"type": ["integer", "null"], "minimum": 1,
                                   "maximum": 86_400,
                                   "description": "QR tokens' lifetime (default: the sim's)."},
                "expiresAtFormat": {"enum": ["iso", "epoch_ms", None],
                                    "description": "How `expiresAt` is written."}}},
        "MerchantAdded": {
            "type": "object", "required": ["merchantId", "accessId"],
            "additionalProperties": False,
            "properties": {"merchantId": {"type": "string"}, "accessId": {"type": "string"}}},
        "SigningKeys": {
            "type": "object", "required": ["keys"], "additionalProperties": False,
            "properties": {"keys": {"type": "array", "description": "Oldest first; never a "
                                    "secret.", "items": {
                "type": "object", "required": ["kid", "alg", "active", "retiredAt"],
                "additionalProperties": False,
                "properties": {"kid": {"type": "string"},
                               "alg": {"enum": ["HS256", "ES256"]},
                               "active": {"type": "boolean",
                                          "description": "The one that signs new tokens."},
                               "retiredAt": {"type": ["string", "null"],
                                             "format": "date-time"}}}}}},
        "SigningKeyRequest": {
            "type": "object", "required": ["kid"],
            "properties": {
                "kid": {"type": "string", "minLength": 1, "maxLength": KID_LIMIT},
                "alg": {"enum": ["HS256", "ES256"], "description": "Default: the sim's."},
                "secret": {"type": "string", "writeOnly": True, "description": "HS256: the "
                           "key (at least 32 bytes); ES256: a PEM private key. Generated "
                           "when absent."}}},
        "SigningKeyAdded": {
            "type": "object", "required": ["kid", "alg", "active"],
            "additionalProperties": False,
            "properties": {"kid": {"type": "string"}, "alg": {"enum": ["HS256", "ES256"]},
                           "active": {"const": True}}},
        "AdminPayment": admin_payment,
        "Payments": {"type": "object", "required": ["payments"], "additionalProperties": False,
                     "properties": {"payments": {"type": "array",
                                                 "items": ref("AdminPayment")}}},
        "Recovery": {"type": "object", "required": ["finished", "open"],
                     "additionalProperties": False,
                     "properties": {
                         "finished": {"type": "integer", "minimum": 0, "description":
                                      "Payments that reached a definite state in this pass."},
                         "open": {"type": "integer", "minimum": 0,
                                  "description": "Payments still without one."}}},
        "Reconciliation": {
            "type": "object", "additionalProperties": False,
            "required": ["reconciled", "differences", "trustlyTotal", "cmsTotal", "perEgm",
                         "errors"],
            "properties": {
                "reconciled": {"type": "boolean", "description": "No difference and every "
                               "CMS could be read."},
                "differences": {"type": "array", "items": difference},
                "trustlyTotal": {"type": "integer", "description": "CREDITED, minor units."},
                "cmsTotal": {"type": "integer", "description": "APPLIED, minor units."},
                "perEgm": {"type": "object", "additionalProperties": {
                    "type": "object", "required": ["trustly", "cms"],
                    "properties": {"trustly": {"type": "integer"},
                                   "cms": {"type": "integer"}}}},
                "errors": {"type": "array", "description": "Each CMS that could not be read.",
                           "items": {"type": "object", "required": ["cms", "error"],
                                     "properties": {"cms": {"type": "string"},
                                                    "error": {"type": "string"}}}}}},
    }


def _since(what: str) -> dict[str, Any]:
    return {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"},
            "description": f"Only {what} created at or after this instant."}


def _paths() -> dict[str, Any]:
    since_400 = error(400, ["INVALID_REQUEST", "INVALID_CHARACTERS"],
                      "`since` is not an ISO-8601 instant.")
    return {
        "/_sim/merchants": {"post": {
            "operationId": "addMerchant", "summary": "Add or replace a merchant and its "
                                                     "credential",
            "requestBody": json_body(ref("Merchant"), {
                "merchantId": "m-2", "accessId": "a-2", "accessKey": "k-2", "name": "Casino 2"}),
            "responses": {"201": json_ok(ref("MerchantAdded"), "Stored."),
                          **_body_errors()}}},
        "/_sim/signing-keys": {
            "get": {"operationId": "listSigningKeys", "summary": "The kept signing keys",
                    "responses": {"200": json_ok(ref("SigningKeys"), "The keys.")}},
            "post": {"operationId": "rotateSigningKey",
                     "summary": "Add a key and sign with it from now on",
                     "description": "The previous key verifies the tokens it signed for "
                                    "another day (plus the leeway).",
                     "requestBody": json_body(ref("SigningKeyRequest"), {"kid": "k-2026-12"}),
                     "responses": {
                         "201": json_ok(ref("SigningKeyAdded"), "Signing with it now."),
                         **_body_errors(),
                         "409": error(409, ["SIGNING_KEY_EXISTS"], "The kid is taken.")}}},
        "/_sim/signing-keys/{kid}": {"delete": {
            "operationId": "removeSigningKey", "summary": "Drop a retired key",
            "description": "Tokens it signed stop verifying at once.",
            "parameters": [{"name": "kid", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {
                "200": json_ok({"type": "object", "required": ["removed"],
                                "additionalProperties": False,
                                "properties": {"removed": {"type": "string"}}}, "Removed."),
                "404": error(404, ["SIGNING_KEY_NOT_FOUND"], "No such key."),
                "409": error(409, ["SIGNING_KEY_ACTIVE"], "It signs: rotate first.")}}},
        "/_sim/payments": {"get": {
            "operationId": "listPayments", "summary": "TPAS's payments, oldest first",
            "parameters": [
                {"name": "status", "in": "query", "schema": {"enum": _STATUSES}},
                {"name": "merchantId", "in": "query", "schema": {"type": "string"}},
                _since("payments"),
                {"name": "limit", "in": "query", "schema": {
                    "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 1000}}],
            "responses": {"200": json_ok(ref("Payments"), "The payments."),
                          "400": error(400, ["INVALID_REQUEST", "INVALID_CHARACTERS"],
                                       "A bad status, since or limit.")}}},
        "/_sim/payments/recover": {"post": {
            "operationId": "recoverPayments", "summary": "Run one recovery pass now",
            "description": "Carries every open payment whose lease ran out on (the same "
                           "transactionId, so money is safe); `all` also takes payments "
                           "another worker holds (right only when no other worker is alive).",
            "requestBody": json_body({"type": "object", "properties": {
                "all": {"type": "boolean", "default": False}}}, {"all": False},
                required=False),
            "responses": {"200": json_ok(ref("Recovery"), "The pass is done."),
                          **_body_errors()}}},
        "/_sim/payments/{paymentId}": {"get": {
            "operationId": "readPayment", "summary": "One payment with its history",
            "parameters": [{"name": "paymentId", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {
                "200": json_ok({"allOf": [ref("AdminPayment"), {"required": ["events"]}]},
                               "The payment and every step it went through."),
                "404": error(404, ["PAYMENT_NOT_FOUND"], "No such payment.")}}},
        "/_sim/reconciliation": {"get": {
            "operationId": "reconcile", "summary": "TPAS's payments against each CMS's "
                                                   "fundings",
            "description": "Reads each CMS's `GET /_sim/fundings` with this sim's admin token; "
                           "a CMS that cannot be read is listed in `errors` (still 200).",
            "parameters": [_since("payments and fundings")],
            "responses": {"200": json_ok(ref("Reconciliation"), "The report."),
                          "400": since_400}}},
    }


def build_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of sim_trustly's control API."""
    paths = {**kernel.kernel_paths(
        error, state=ref("State"),
        reset="Forgets every QR token, lockout, payment and merchant, then seeds the "
              "configured merchants again; signing keys are kept."), **_paths()}
    return kernel.document(
        title="scanpay-sim Trustly control API (/_sim)",
        description="Tests and the harness drive sim_trustly through it: reset, clock, "
                    "journal, fault rules, merchants, signing keys, TPAS's payments and "
                    "reconciliation. It exists only when the sim has an admin token; every "
                    "call, this document's included, needs `Authorization: Bearer <admin "
                    "token>`. Errors are in Trustly's dialect (`errors[0].reason` is the "
                    "stable code). Ours, not Trustly's: production has nothing like it.",
        port=DEFAULT_PORT, paths=kernel.finish_paths(paths, error), schemas=_schemas())


def add_route(control: Blueprint) -> None:
    """Serve the document at `GET /_sim/openapi.json` on the control blueprint."""
    kernel.add_document_route(control, build_document)


def write_document(path: str = PUBLISHED) -> None:
    """Write the document to `path` (how docs/api/trustly-control.openapi.json is made)."""
    kernel.write(build_document, path)


if __name__ == "__main__":  # python -m sim_trustly.control_openapi
    import sys

    write_document(sys.argv[1] if len(sys.argv) > 1 else PUBLISHED)
