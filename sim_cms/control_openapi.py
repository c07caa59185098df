"""The OpenAPI 3.1 document of sim_cms's control API (`/_sim/*`).

The kernel's routes (`simkit.control_openapi`) plus sim_cms's own (`sim_cms.admin_api`): decided
fundings, the EGM registry and states, the QR display and forced rotation, with errors as
RFC 9457 problems (the CWS API's `Problem`). Served at `GET /_sim/openapi.json` behind the
admin token like every control route, and written to docs/api/cms-control.openapi.json
(`python -m sim_cms.control_openapi`); a test keeps the two equal and validates real answers
against it. The decided-funding and rotation shapes are also the partner hooks document's
(`harness.contract_openapi` imports them from here).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from sim_cms.context import cms
from sim_cms.egms import MAX_CREDIT_LIMIT, STATES
from sim_cms.openapi_schemas import EGM_ID, component_schemas, problem
from sim_cms.settings import DEFAULT_PORT, CmsSettings
from sim_cms.trustly_client import MAX_TOKEN_ID_CHARS, MAX_URL_BYTES
from simkit import control_openapi as kernel
from simkit.control_openapi import json_body, json_ok, ref

PUBLISHED = "docs/api/cms-control.openapi.json"
_MINOR = {"type": "integer", "minimum": 0, "description": "Integer minor units; never a float."}
_INSTANT = {"type": "string", "format": "date-time",
            "description": "An ISO-8601 instant with its offset (UTC `Z` recommended)."}

DECIDED_FUNDING: dict[str, Any] = {
    "type": "object", "required": ["transactionId", "egmId", "amount", "currency", "outcome"],
    "properties": {
        "transactionId": {"type": "string"}, "egmId": {"type": "string"},
        "amount": _MINOR, "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "outcome": {"type": "string", "enum": ["APPLIED", "REJECTED"],
                    "description": "APPLIED: on the meter; REJECTED: decided, nothing "
                                   "applied."},
        "httpStatus": {"type": "integer"}, "code": {"type": ["string", "null"]},
        "ubai": {"type": ["string", "null"]}, "qrTokenId": {"type": ["string", "null"]},
        "decidedAt": {**_INSTANT, "description": "On the CMS's clock."}}}
FUNDINGS: dict[str, Any] = {
    "type": "object", "required": ["fundings"],
    "properties": {"fundings": {"type": "array", "items": {"$ref": kernel.REF + "DecidedFunding"},
                                "description": "Oldest first."}}}
ROTATION: dict[str, Any] = {"type": "object", "properties": {
    "acquired": {"type": "array", "items": {"type": "string"},
                 "description": "The EGMs that got a new QR."},
    "failed": {"type": "object", "additionalProperties": {"type": "string"},
               "description": "EGM id -> why its QR could not be replaced."}}}

_EGM_ID_PARAM = [{"name": "egmId", "in": "path", "required": True, "schema": {"type": "string"},
                  "example": "EGM-001"}]
_NOT_FOUND = problem(404, ["EGM_NOT_FOUND"], "No such EGM.")
_NULLABLE_INSTANT = {"oneOf": [kernel.INSTANT, {"type": "null"}]}


def _body_errors(*codes: str) -> dict[str, Any]:
    """What a route reading its body with `read_json_body` refuses besides its own 400s."""
    return {
        "400": problem(400, ["INVALID_REQUEST", "INVALID_CHARACTERS", *codes],
                       "A member missing, unknown, of the wrong type or out of range, or the "
                       "body is not JSON; nothing changed."),
        "413": problem(413, ["PAYLOAD_TOO_LARGE"], "The body is over the size limit."),
        "415": problem(415, ["UNSUPPORTED_MEDIA_TYPE"], "Content-Type is not application/json."),
    }


def _schemas(settings: CmsSettings) -> dict[str, Any]:
    cws = component_schemas(settings)
    egm = cws["Egm"]
    credit_limit = {"type": "integer", "minimum": 0, "maximum": MAX_CREDIT_LIMIT}
    qr_state = {
        "type": "object", "additionalProperties": False,
        "required": ["qrTokenId", "url", "expiresAt", "rotatesAt", "error", "failures",
                     "retryInS"],
        "description": "The QR a phone could use now (all null when none: never acquired, "
                       "expired or already paid) and the state of acquisitions.",
        "properties": {
            "qrTokenId": {"type": ["string", "null"]}, "url": {"type": ["string", "null"]},
            "expiresAt": _NULLABLE_INSTANT, "rotatesAt": _NULLABLE_INSTANT,
            "error": {"type": ["string", "null"], "description": "Why the last acquisition "
                      "failed."},
            "failures": {"type": "integer", "minimum": 0},
            "retryInS": {"type": ["integer", "null"], "minimum": 0}}}
    return {
        **kernel.kernel_schemas(),
        "Problem": cws["Problem"], "Egm": egm, "QrDisplay": cws["QrDisplay"],
        "EgmDump": {**egm, "required": [*egm["required"], "qr"],
                    "properties": {**egm["properties"], "qr": qr_state}},
        "EgmDumps": {"type": "object", "required": ["egms"], "additionalProperties": False,
                     "properties": {"egms": {"type": "array", "items": ref("EgmDump")}}},
        "State": {
            "type": "object", "additionalProperties": False,
            "required": ["casino", "currency", "egms", "ledger", "clock", "faults"],
            "properties": {
                "casino": {"type": "string"}, "currency": {"type": "string"},
                "egms": {"type": "array", "items": ref("EgmDump")},
                "ledger": {"type": "object", "additionalProperties": False,
                           "required": ["transactions", "entries", "appliedTotal",
                                        "balanced"],
                           "properties": {
                               "transactions": {"type": "integer", "minimum": 0},
                               "entries": {"type": "integer", "minimum": 0},
                               "appliedTotal": {"type": "integer", "minimum": 0},
                               "balanced": {"type": "boolean", "description": "Whether every "
                                            "ledger transaction sums to zero."}}},
                "clock": ref("Clock"),
                "faults": {"type": "array", "items": ref("FaultRuleShown")}}},
        "DecidedFunding": {**DECIDED_FUNDING, "required": [
            *DECIDED_FUNDING["required"], "httpStatus", "code", "ubai", "qrTokenId",
            "decidedAt"], "additionalProperties": False},
        "Fundings": {**FUNDINGS, "additionalProperties": False},
        "EgmDefinition": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 200,
                         "description": "Default: the id."},
                "creditLimit": {**credit_limit, "description": "The meter's cap (default: "
                                "the reference's)."}}},
        "EgmChange": {
            "type": "object", "additionalProperties": False, "minProperties": 1,
            "properties": {"state": {"enum": list(STATES)}, "creditLimit": credit_limit}},
        "QrDisplayRequest": {
            "type": "object", "required": ["url", "expiresAt"], "additionalProperties": False,
            "properties": {
                "url": {"type": "string", "minLength": 1, "maxLength": MAX_URL_BYTES},
                "expiresAt": {"type": "string", "maxLength": 64, "description": "An ISO-8601 "
                              "instant after the CMS's now."},
                "qrTokenId": {"type": "string", "pattern": f"^[!-~]{{1,{MAX_TOKEN_ID_CHARS}}}$",
                              "description": "Default: the url's last path segment."},
                "token": {"type": "string"}}},
        "Rotation": {**ROTATION, "required": ["acquired", "failed"],
                     "additionalProperties": False},
    }


def _paths() -> dict[str, Any]:
    return {
        "/_sim/fundings": {"get": {
            "operationId": "listFundings", "summary": "Every decided funding, oldest first",
            "parameters": [{"name": "since", "in": "query",
                            "schema": {"type": "string", "format": "date-time"},
                            "description": "Only fundings decided at or after this instant "
                                           "(on the CMS's clock)."}],
            "responses": {"200": json_ok(ref("Fundings"), "The decided fundings."),
                          "400": problem(400, ["INVALID_REQUEST", "INVALID_CHARACTERS"],
                                         "`since` is not an ISO-8601 instant.")}}},
        "/_sim/egms": {"get": {
            "operationId": "listEgms", "summary": "Every EGM with meter, state and QR",
            "responses": {"200": json_ok(ref("EgmDumps"), "By id.")}}},
        "/_sim/egms/{egmId}": {
            "parameters": _EGM_ID_PARAM,
            "get": {"operationId": "readEgm", "summary": "One EGM with its QR",
                    "responses": {"200": json_ok(ref("EgmDump"), "The EGM."),
                                  "404": _NOT_FOUND}},
            "put": {"operationId": "defineEgm", "summary": "Create an EGM or rename and "
                                                           "re-cap it",
                    "description": f"The id must match `{EGM_ID['pattern']}`. A new EGM is "
                                   "IDLE with its meter at 0; an existing one keeps its "
                                   "state and meter.",
                    "requestBody": json_body(ref("EgmDefinition"), {"name": "Slot 9"}),
                    "responses": {"200": json_ok(ref("Egm"), "Changed."),
                                  "201": json_ok(ref("Egm"), "Created."),
                                  **_body_errors("INVALID_EGM_ID", "INVALID_CREDIT_LIMIT")}},
            "post": {"operationId": "changeEgm", "summary": "Change an EGM's state or cap",
                     "requestBody": json_body(ref("EgmChange"), {"state": "IN_GAME"}),
                     "responses": {"200": json_ok(ref("Egm"), "The EGM after the change."),
                                   **_body_errors("INVALID_STATE", "INVALID_CREDIT_LIMIT"),
                                   "404": _NOT_FOUND}}},
        "/_sim/egms/{egmId}/qr-display": {"parameters": _EGM_ID_PARAM, "post": {
            "operationId": "showQr", "summary": "Show a given QR on an EGM",
            "description": "As if the CMS had acquired it from Trustly (for runs without a "
                           "Trustly): fundings naming its qrTokenId are then accepted.",
            "requestBody": json_body(ref("QrDisplayRequest"), {
                "url": "http://127.0.0.1:8710/scan/abc", "expiresAt": "2026-11-25T21:10:00Z"}),
            "responses": {
                "201": json_ok(ref("QrDisplay"), "Shown now."), **_body_errors(),
                "404": _NOT_FOUND,
                "409": problem(409, ["QR_TOKEN_ID_TAKEN"], "The token id was shown before "
                               "(on any EGM).")}}},
        "/_sim/qr/rotate": {"post": {
            "operationId": "rotateQrs", "summary": "Run one QR rotation pass now",
            "description": "Replaces every QR whose rotation time has come on the CMS's "
                           "clock, before answering; a failure is reported, not raised.",
            "responses": {"200": json_ok(ref("Rotation"), "The pass is done.")}}},
    }


def build_document(settings: CmsSettings | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of sim_cms's control API (defaults: the reference CMS)."""
    s = settings or CmsSettings(database_url="sqlite://")
    paths = {**kernel.kernel_paths(
        problem, state=ref("State"),
        reset="Forgets meters, QRs shown and used, limits and their usage, fundings and the "
              "ledger, issued access tokens, and every EGM the settings do not name, then "
              "seeds the demo casino again (meters at 0)."), **_paths()}
    return kernel.document(
        title="scanpay-sim reference CMS control API (/_sim)",
        description="Tests and the harness drive sim_cms through it: reset, clock, journal, "
                    "fault rules, EGMs, QR display and rotation, decided fundings. It exists "
                    "only when the CMS has an admin token; every call, this document's "
                    "included, needs `Authorization: Bearer <admin token>`. Errors are "
                    "`application/problem+json` with a stable `code`. What a partner's CMS "
                    "must offer of it is in partner-hooks.openapi.json.",
        port=DEFAULT_PORT, paths=kernel.finish_paths(paths, problem), schemas=_schemas(s))


def add_route(control: Blueprint) -> None:
    """Serve the document (for this CMS's settings) at `GET /_sim/openapi.json`."""
    kernel.add_document_route(control, lambda: build_document(cms().settings))


def write_document(path: str = PUBLISHED) -> None:
    """Write the reference document to `path` (docs/api/cms-control.openapi.json)."""
    kernel.write(build_document, path)


if __name__ == "__main__":  # python -m sim_cms.control_openapi
    import sys

    write_document(sys.argv[1] if len(sys.argv) > 1 else PUBLISHED)
