"""OpenAPI 3.1 pieces of the kernel's control API (`simkit.control`), shared by both sims.

Each sim documents its `/_sim/*` in one document (`sim_trustly.control_openapi`,
`sim_cms.control_openapi`): the kernel routes described here plus the sim's own, with errors
in the sim's own dialect, which the sim hands in as an `ErrorResponse` builder. The property
shapes of a journal entry, a fault rule and a deletion count are also the ones the partner
hooks document (`harness.contract_openapi`) uses, so the two cannot describe the same wire
shapes differently.

Every control route, the document's own included, sits behind the admin token, so every
operation documents 401; `refuse_unstorable_text` runs before every route, so every
operation documents 400 INVALID_CHARACTERS too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify

from simkit.control import MAX_CLOCK_MOVE_S, MAX_RULES_PER_REQUEST
from simkit.crash_points import POINTS
from simkit.faults import ACTIONS, MAX_DELAY_MS, METHODS, SIM_ACTIONS
from simkit.journal import MAX_QUERY_LIMIT

# `error(status, codes, description)`: a response object in the sim's error dialect.
ErrorResponse = Callable[[int, list[str], str], dict[str, Any]]

REF = "#/components/schemas/"
ADMIN_SECURITY: list[dict[str, list[str]]] = [{"adminBearer": []}]
ADMIN_SCHEME = {"type": "http", "scheme": "bearer",
                "description": "`Authorization: Bearer <admin token>` (the sim's "
                               "`--admin-token` / `SCANPAY_ADMIN_TOKEN`), compared in "
                               "constant time. Without an admin token the sim serves no "
                               "`/_sim/*` at all (404)."}
INSTANT = {"type": "string", "format": "date-time",
           "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$",
           "description": "UTC with milliseconds, on the sim's clock."}
OPENAPI_PATH = "/_sim/openapi.json"

DELETED: dict[str, Any] = {
    "type": "object", "properties": {"deleted": {"type": "integer", "minimum": 0}}}

# A journal entry's members; the partner hooks document overrides `id`, `at` and `fault`
# with what it asks of a partner's CMS (key order is kept by a `{**shared, ...}` merge).
JOURNAL_ENTRY_PROPERTIES: dict[str, Any] = {
    "id": {"type": "integer", "minimum": 1,
           "description": "Increasing with every request the sim answers; page forward with "
                          "`since`."},
    "at": {**INSTANT, "description": "When the answer was sent, on the sim's clock."},
    "method": {"type": "string"},
    "path": {"type": "string", "description": "The path as requested, without the "
             "query string."},
    "query": {"type": "string", "description": "The query string as received, "
              "without the leading `?` and not decoded (`limit=1&since=0`); empty or "
              "absent when there was none."},
    "status": {"type": "integer"},
    "latencyMs": {"type": "integer", "minimum": 0},
    "correlationId": {"type": "string",
                      "description": "The request's `X-Correlation-Id` header."},
    "requestHeaders": {"type": "object"}, "requestBody": {"type": "string"},
    "responseHeaders": {"type": "object"}, "responseBody": {"type": "string"},
    "fault": {"type": ["string", "null"],
              "description": "The fault injected into this exchange, if one fired: a label "
                             "whose first word is the action (`status 503 (rule 4)`)."},
}

# A fault rule's members as a request declares them; the partner hooks document overrides
# `action` (what its catalogue sends).
FAULT_RULE_PROPERTIES: dict[str, Any] = {
    "method": {"type": "string", "enum": sorted(METHODS), "default": "*",
               "description": "The request's method; `*` (or absent) matches any."},
    "path": {"type": "string", "pattern": "^/",
             "description": "The request's path, compared exactly, without the query "
                            "string; a `*` as its last character matches every path "
                            "that starts with what comes before it (`/cws/v1/*`, "
                            "`/*` for all)."},
    "action": {"type": "string", "enum": list(ACTIONS), "description": (
        "`status`: answer at once with the HTTP `status` (a FAULT_INJECTED error), nothing "
        "handled; `delay`: answer `delayMs` late; `drop`: close the connection without an "
        "answer, nothing handled; `apply_then_drop`: handle the request in full, then close "
        "the connection without an answer.")},
    "status": {"type": ["integer", "null"], "minimum": 400, "maximum": 599,
               "description": "For `status` only: the HTTP status to answer (400..599); "
                              "null or absent for the other actions."},
    "delayMs": {"type": "integer", "minimum": 0,
                "description": "For `delay`: how late, in milliseconds (0 or absent "
                               "for the other actions)."},
    "probability": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                    "default": 1,
                    "description": "The chance a matching request is hit (each "
                                   "match rolls once); 1 when absent."},
    "times": {"type": ["integer", "null"], "minimum": 1,
              "description": "How many matching requests it hits, then it is gone; "
                             "null or absent: every matching request until `DELETE "
                             "/_sim/faults`."},
}


# The sims also take two actions of their own reliability tests (not the partner contract's).
_SIM_ONLY_ACTIONS = (" The sims also take `duplicate` (the request is served twice, the caller "
                     "gets the second answer) and `crash` (the serving process kills itself at "
                     "`point`), for their own reliability tests.")
_POINT = {"enum": list(POINTS), "description": "For `crash` only: where the process dies."}


def ref(name: str) -> dict[str, str]:
    """A reference to a component schema."""
    return {"$ref": REF + name}


def json_ok(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A JSON success response."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def json_body(schema: dict[str, Any], example: Any, *, required: bool = True) -> dict[str, Any]:
    """A JSON request body."""
    return {"required": required,
            "content": {"application/json": {"schema": schema, "example": example}}}


def kernel_schemas() -> dict[str, Any]:
    """The component schemas the kernel routes answer and take."""
    rule_shown = {
        "type": "object",
        "required": ["id", "method", "path", "action", "status", "delayMs", "probability",
                     "remaining", "fired", "createdAt"],
        "properties": {
            **{name: FAULT_RULE_PROPERTIES[name] for name in
               ("method", "path", "status", "delayMs", "probability")},
            "action": {"type": "string"},
            "id": {"type": "integer", "minimum": 1,
                   "description": "For `DELETE /_sim/faults/{id}`."},
            "remaining": {"type": ["integer", "null"], "minimum": 0,
                          "description": "What is left of `times` (null: unlimited)."},
            "fired": {"type": "integer", "minimum": 0},
            "createdAt": INSTANT,
            "point": _POINT,
        },
    }
    return {
        "Clock": {
            "type": "object", "required": ["now", "controllable", "frozen"],
            "additionalProperties": False,
            "properties": {
                "now": {**INSTANT, "description": "The sim's now: every decision it makes is "
                        "made at this instant."},
                "controllable": {"type": "boolean", "description": "True when the sim runs "
                                 "on a manual clock (`--controllable-clock`)."},
                "frozen": {"type": ["boolean", "null"], "description": "A manual clock "
                           "stands still until `resume`; null on the system clock."}}},
        "ClockMove": {
            "description": "Exactly one member.",
            "oneOf": [
                {"type": "object", "required": ["advance"], "additionalProperties": False,
                 "properties": {"advance": {
                     "type": "number", "minimum": -MAX_CLOCK_MOVE_S,
                     "maximum": MAX_CLOCK_MOVE_S,
                     "description": "Seconds to move (backwards when negative)."}}},
                {"type": "object", "required": ["set"], "additionalProperties": False,
                 "properties": {"set": {"type": "string", "maxLength": 64,
                                        "description": "An ISO-8601 instant to jump to."}}},
                {"type": "object", "required": ["resume"], "additionalProperties": False,
                 "properties": {"resume": {"const": True, "description": "Let the clock run "
                                           "with real time from where it stands."}}}]},
        "FaultRule": {
            "type": "object", "required": ["path", "action"], "additionalProperties": False,
            "description": "One fault on the sim's own API (never on `/_sim/*`). Rules are "
                           "tried in the order they were declared; the first that matches a "
                           "request (and passes its `probability` roll) fires, spending one "
                           "of its `times`.",
            "properties": {**FAULT_RULE_PROPERTIES,
                           "action": {**FAULT_RULE_PROPERTIES["action"],
                                      "enum": list(SIM_ACTIONS),
                                      "description": FAULT_RULE_PROPERTIES["action"][
                                          "description"] + _SIM_ONLY_ACTIONS},
                           "delayMs": {"type": "integer", "minimum": 0,
                                       "maximum": MAX_DELAY_MS,
                                       "description": "For `delay`: 1..120000 ms; 0 or "
                                                      "absent for the other actions."},
                           "point": _POINT}},
        "FaultRules": {
            "type": "object", "required": ["faults"], "additionalProperties": False,
            "description": "Several rules at once, validated as a whole before any is "
                           "added.",
            "properties": {"faults": {"type": "array", "minItems": 1,
                                      "maxItems": MAX_RULES_PER_REQUEST,
                                      "items": ref("FaultRule")}}},
        "FaultRuleShown": rule_shown,
        "FaultList": {
            "type": "object", "required": ["faults"], "additionalProperties": False,
            "properties": {"faults": {"type": "array", "items": ref("FaultRuleShown")}}},
        "Deleted": {**DELETED, "required": ["deleted"]},
        "JournalEntry": {
            "type": "object", "required": list(JOURNAL_ENTRY_PROPERTIES),
            "additionalProperties": False,
            "description": "One request the sim served (never a `/_sim/*` request), secrets "
                           "redacted.",
            "properties": JOURNAL_ENTRY_PROPERTIES},
        "Journal": {
            "type": "object", "required": ["entries"], "additionalProperties": False,
            "properties": {"entries": {"type": "array", "items": ref("JournalEntry")}}},
        "Reset": {"type": "object", "required": ["reset"], "additionalProperties": False,
                  "properties": {"reset": {"const": True}}},
    }


def kernel_paths(error: ErrorResponse, *, state: dict[str, Any], reset: str) -> dict[str, Any]:
    """The kernel's routes; `state` is the sim's `GET /_sim/state` schema, `reset` what its
    reset forgets. Neither sim has a seed hook, so `POST /_sim/seed` is always 404."""
    bad = "Not a valid {}: INVALID_REQUEST."
    return {
        "/_sim/reset": {"post": {
            "operationId": "reset", "summary": "Forget the test data (not the clock)",
            "description": reset + " The journal and the fault rules are emptied; the clock "
                           "stays where it is.",
            "responses": {"200": json_ok(ref("Reset"), "Reset done.")}}},
        "/_sim/seed": {"post": {
            "operationId": "seed", "summary": "Seed data (no seed hook in this sim)",
            "description": "The kernel's seed hook; this sim installs none, so the answer is "
                           "always 404 (use the sim's own routes to add data).",
            "responses": {"404": error(404, ["NOT_FOUND"], "This sim has no seed hook.")}}},
        "/_sim/state": {"get": {
            "operationId": "readState", "summary": "A dump of the sim's state",
            "responses": {"200": json_ok(state, "The state now.")}}},
        "/_sim/clock": {
            "get": {"operationId": "readClock", "summary": "The sim's now",
                    "responses": {"200": json_ok(ref("Clock"), "The clock.")}},
            "post": {"operationId": "moveClock", "summary": "Move, set or resume the clock",
                     "requestBody": json_body(ref("ClockMove"), {"advance": 60}),
                     "responses": {
                         "200": json_ok(ref("Clock"), "The clock after the move."),
                         "400": error(400, ["INVALID_REQUEST", "CLOCK_OUT_OF_RANGE",
                                            "INVALID_CHARACTERS"],
                                      "Not exactly one valid move, or one that would leave "
                                      "the supported range of instants."),
                         "409": error(409, ["CLOCK_NOT_CONTROLLABLE"],
                                      "The sim runs on the system clock.")}}},
        "/_sim/journal": {
            "get": {"operationId": "readJournal", "summary": "Requests and answers",
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {
                            "type": "integer", "minimum": 1, "maximum": MAX_QUERY_LIMIT,
                            "default": 200},
                         "description": "Without `since`: the latest `limit` entries; with "
                                        "`since`: the first `limit` entries after it."},
                        {"name": "since", "in": "query", "schema": {
                            "type": "integer", "minimum": 0},
                         "description": "Only entries with a greater `id`, oldest first."},
                        {"name": "path", "in": "query", "schema": {"type": "string"},
                         "description": "Only entries whose path starts with this."},
                        {"name": "correlationId", "in": "query", "schema": {"type": "string"},
                         "description": "Only entries of this `X-Correlation-Id`."}],
                    "responses": {
                        "200": json_ok(ref("Journal"), "Entries in increasing id order."),
                        "400": error(400, ["INVALID_REQUEST", "INVALID_CHARACTERS"],
                                     bad.format("limit or since"))}},
            "delete": {"operationId": "clearJournal", "summary": "Empty the journal",
                       "responses": {"200": json_ok(ref("Deleted"),
                                                    "How many entries were removed.")}}},
        "/_sim/faults": {
            "get": {"operationId": "listFaults", "summary": "The rules in force",
                    "responses": {"200": json_ok(ref("FaultList"), "Every rule in force.")}},
            "post": {"operationId": "addFaults", "summary": "Declare one rule or several",
                     "requestBody": json_body(
                         {"oneOf": [ref("FaultRule"), ref("FaultRules")]},
                         {"method": "POST", "path": "/cws/v1/fundings", "action": "status",
                          "status": 503, "times": 1}),
                     "responses": {
                         "201": json_ok(ref("FaultList"), "The rules added (only those)."),
                         "400": error(400, ["INVALID_REQUEST", "INVALID_CHARACTERS"],
                                      "A rule the sim cannot honour; none was added.")}},
            "delete": {"operationId": "clearFaults", "summary": "Remove every rule",
                       "responses": {"200": json_ok(ref("Deleted"),
                                                    "How many rules were removed.")}}},
        "/_sim/faults/{id}": {"delete": {
            "operationId": "removeFault", "summary": "Remove one rule",
            "parameters": [{"name": "id", "in": "path", "required": True,
                            "schema": {"type": "integer", "minimum": 0}}],
            "responses": {"200": json_ok({**DELETED, "required": ["deleted"]},
                                         "Removed (`deleted` is 1)."),
                          "404": error(404, ["FAULT_NOT_FOUND", "NOT_FOUND"],
                                       "No such rule (NOT_FOUND: the id is not an "
                                       "integer).")}}},
        OPENAPI_PATH: {"get": {
            "operationId": "controlOpenApi", "summary": "This document",
            "description": "Behind the admin token like every control route: the control "
                           "API exists only where a token is configured, and the same "
                           "document is published under docs/api/.",
            "responses": {"200": json_ok({"type": "object", "required": ["openapi"]},
                                         "The OpenAPI 3.1 document.")}}},
    }


def finish_paths(paths: dict[str, Any], error: ErrorResponse) -> dict[str, Any]:
    """Give every operation the admin security, its 401 and 400 INVALID_CHARACTERS, and its
    statuses in order."""
    unauthorized = error(401, ["ADMIN_TOKEN_REQUIRED"],
                         "The admin token is missing or wrong.")
    unauthorized["headers"] = {"WWW-Authenticate": {
        "required": True, "description": "The challenge.",
        "schema": {"const": 'Bearer realm="scanpay-control"'}}}
    unstorable = error(400, ["INVALID_CHARACTERS"], "The path, query or JSON body holds a NUL "
                       "or an unpaired surrogate; refused before the route runs.")
    for item in paths.values():
        for method, operation in item.items():
            if method == "parameters":
                continue
            responses = {"400": unstorable, **operation["responses"], "401": unauthorized}
            operation["responses"] = dict(sorted(responses.items()))
            operation["security"] = ADMIN_SECURITY
    return paths


def document(*, title: str, description: str, port: int, paths: dict[str, Any],
             schemas: dict[str, Any]) -> dict[str, Any]:
    """A whole control document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1.0.0", "description": description},
        "servers": [{"url": f"http://127.0.0.1:{port}"}],
        "security": ADMIN_SECURITY,
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"adminBearer": ADMIN_SCHEME}},
    }


def add_document_route(blueprint: Blueprint, build: Callable[[], dict[str, Any]]) -> None:
    """Serve `build()` at `GET /_sim/openapi.json` on the (guarded) control blueprint."""
    def control_openapi() -> Response:
        return jsonify(build())

    blueprint.add_url_rule("/openapi.json", view_func=control_openapi, methods=["GET"])


def write(build: Callable[[], dict[str, Any]], path: str) -> None:
    """Write `build()` to `path` as the published copy."""
    Path(path).write_text(json.dumps(build(), indent=2) + "\n", encoding="utf-8")
