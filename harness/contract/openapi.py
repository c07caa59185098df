"""The OpenAPI 3.1 document of the partner hooks (docs/api/partner-hooks.openapi.json).

Built here, in code, so the paths come from the same records the harness uses: the EGM paths
from `harness.target_config.EgmPaths` (their defaults, which are the reference sim_cms's),
the control hooks from `harness.target_config.HOOK_OPERATIONS`. `python -m
harness.contract.doc --write` writes it; a unit test fails when the committed file differs,
and an e2e test checks that sim_cms answers every operation as documented.

Every operation carries `x-scanpay-hook`: the name of the hook it belongs to (one of
`HOOKS`), or `cms.egm.<key>` for the calls the target's `[cms.egm]` table configures.
The CMS's own API (token, fundings, status inquiry, limits) is documented in
docs/api/cms.openapi.json; a partner's paths may differ (the `[cms].paths` table).
The shapes the sims' own control documents share (journal entry, fault rule, deletion count,
decided fundings, rotation) come from `simkit.control_openapi` and `sim_cms.control_openapi`.
"""

from __future__ import annotations

import re
from typing import Any

from harness.target_config import HOOK_MEANINGS, HOOK_OPERATIONS, HOOKS, EgmPaths
from sim_cms.control_openapi import DECIDED_FUNDING, FUNDINGS, ROTATION
from simkit.control_openapi import DELETED, FAULT_RULE_PROPERTIES, JOURNAL_ENTRY_PROPERTIES
from simkit.faults import ACTIONS
from simkit.journal import MAX_QUERY_LIMIT

EGM_STATES = ("IDLE", "IN_GAME", "DOOR_OPEN", "TILT", "OFFLINE")
CMS_AUTH: list[dict[str, list[str]]] = [{"cmsOAuth": []}, {"cmsBasic": []}, {"cmsApiKey": []}]
ADMIN_AUTH: list[dict[str, list[str]]] = [{"adminBearer": []}]
MINOR = {"type": "integer", "minimum": 0, "description": "Integer minor units; never a float."}
INSTANT = {"type": "string", "format": "date-time",
           "description": "An ISO-8601 instant with its offset (UTC `Z` recommended)."}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": _ref("Problem")},
                        "application/json": {"schema": _ref("Problem")}}}


CMS_401 = {"description": "Missing, wrong or expired `[cms].auth` credentials (with OAuth2 "
                          "the harness fetches a new token and repeats the call once).",
           "content": {"application/problem+json": {"schema": _ref("Problem")},
                       "application/json": {"schema": _ref("Problem")}}}
ADMIN_401 = {"description": "The admin token is missing or wrong (the harness stops: exit 2).",
             "content": {"application/problem+json": {"schema": _ref("Problem")},
                         "application/json": {"schema": _ref("Problem")}}}
EGM_ID = {"name": "egmId", "in": "path", "required": True, "example": "EGM-001",
          "schema": {"type": "string", "minLength": 1},
          "description": "One of the target file's `cms.egm_ids` (the `{egm_id}` of the "
                         "configured path)."}

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object", "required": ["status", "code"],
        "description": "An error answer. RFC 9457 problem+json with a stable `code` is what "
                       "the reference CMS sends; the harness reads only the status and `code`.",
        "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                       "status": {"type": "integer", "minimum": 400, "maximum": 599},
                       "detail": {"type": "string"},
                       "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"}}},
    "EgmView": {
        "type": "object", "required": ["creditMeter"],
        "description": "The EGM as the CMS sees it. Other members are allowed and ignored.",
        "properties": {
            "id": {"type": "string"},
            "creditMeter": {**MINOR, "description": "The meter now, in minor units. Every "
                            "money check of the catalogue is a delta of this value."},
            "creditLimit": {**MINOR, "description": "The meter's cap; EGM-005 is skipped "
                            "without it."},
            "state": {"type": "string", "enum": list(EGM_STATES)},
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$",
                         "description": "ISO 4217; the harness pays in it (USD when absent)."}}},
    "ShownQr": {
        "type": "object", "required": ["url"],
        "description": "The QR the EGM shows now, just acquired from the harness's Trustly.",
        "properties": {
            "url": {"type": "string", "format": "uri", "pattern": "^https?://",
                    "description": "Exactly the `url` the harness's Trustly answered: "
                                   "`<trustly base>/scan/<code>`."},
            "qrTokenId": {"type": "string", "minLength": 1,
                          "description": "The code that ends `url` (default: its last path "
                                         "segment); fundings name it as `qrTokenId`."},
            "expiresAt": INSTANT,
            "rotatesAt": {**INSTANT, "description": "When the CMS will replace this QR by "
                          "itself: `expiresAt` minus the CMS's rotation buffer (the "
                          "reference's is 30 s; yours may differ, but must be at least 10 s: "
                          "SCAN-004 moves the clock to `rotatesAt` + 1 s, never later than "
                          "10 s before `expiresAt`, and expects a new QR by then)."},
            "egmId": {"type": "string"}}},
    "Clock": {
        "type": "object", "required": ["now"],
        "properties": {
            "now": {**INSTANT, "description": "The CMS's now: the instant every decision of "
                    "the CMS is made at (token TTL, gaming day, rotation, `decidedAt`)."},
            "controllable": {"type": "boolean"},
            "frozen": {"type": ["boolean", "null"]}}},
    "ClockMove": {
        "oneOf": [
            {"type": "object", "required": ["advance"], "additionalProperties": False,
             "properties": {"advance": {"type": "number", "exclusiveMinimum": 0,
                                        "description": "Seconds to move forward (the only "
                                                       "move the harness sends)."}}},
            {"type": "object", "required": ["set"], "additionalProperties": False,
             "properties": {"set": {**INSTANT, "description": "Jump to this instant (for "
                                    "re-aligning after a run; never sent by the harness)."}}}]},
    "EgmStateChange": {
        "type": "object", "required": ["state"],
        "properties": {"state": {"type": "string", "enum": list(EGM_STATES)}}},
    "FaultRule": {
        "type": "object", "required": ["path", "action"],
        "description": "One fault on the CMS's own API (never on `/_sim/*`). Rules are tried "
                       "in the order they were declared; the first that matches a request "
                       "(and passes its `probability` roll) fires, spending one of its "
                       "`times`; a request is hit by one rule at most.",
        "properties": {
            **FAULT_RULE_PROPERTIES,
            "action": {"type": "string", "enum": list(ACTIONS), "description": (
                "What the rule does to a matching request. The catalogue declares only two, "
                "always on `POST` of your `paths.fundings` with `times: 1`: `apply_then_drop` "
                "(handle the request in full, the funding applied and committed, then close "
                "the connection without an answer) and `delay` (answer `delayMs` late). The "
                "reference also takes `status` (answer at once with the HTTP `status`, a "
                "problem with code FAULT_INJECTED, nothing handled) and `drop` (close the "
                "connection without an answer, nothing handled); the catalogue never "
                "declares them, so a CMS may refuse them with 400.")},
            "probability": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                            "default": 1,
                            "description": "The chance a matching request is hit (each "
                                           "match rolls once); 1 when absent. The catalogue "
                                           "never sends it."}}},
    "FaultList": {
        "type": "object", "required": ["faults"],
        "properties": {"faults": {"type": "array", "items": {"type": "object"}}}},
    "Deleted": DELETED,
    "JournalEntry": {
        "type": "object", "required": ["id", "at", "method", "path"],
        "description": "One request the CMS served: its API, EGM calls and screens, never the "
                       "control API's own requests (`/_sim/*`: the reference does not journal "
                       "them, and the harness reads the journal before each of its requests, "
                       "so journaling those reads would fill the journal with itself).",
        "properties": {
            **JOURNAL_ENTRY_PROPERTIES,
            "id": {"type": "integer", "minimum": 1,
                   "description": "Increasing with every request the CMS answers. The "
                                  "harness groups entries by `id`: it reads the newest id "
                                  "before each of its own requests, and an entry belongs to "
                                  "the request whose window its id falls in."},
            "at": {**INSTANT, "description": "When the answer was sent. The reference stamps "
                   "it on its own clock (the one `GET /_sim/clock` reports, frozen or moved "
                   "by the clock hook); the wall clock is fine too. Within one group the "
                   "harness orders calls by `at` minus `latencyMs`, then by `id` (so a frozen "
                   "clock gives the order of ids), and nests a call one system made while "
                   "serving the other's request by time, falling back to the group's only "
                   "candidate when the two systems' clocks disagree."},
            "fault": {"type": ["string", "null"],
                      "description": "The fault the faults hook injected into this exchange, "
                                     "if one fired: a label whose first word is the action "
                                     "(`apply_then_drop (rule 3)`); `status` stays what the "
                                     "app answered."}}},
    "Journal": {
        "type": "object", "required": ["entries"],
        "properties": {"entries": {"type": "array", "items": _ref("JournalEntry"),
                                   "description": "In increasing `id` order."}}},
    "DecidedFunding": DECIDED_FUNDING,
    "Fundings": FUNDINGS,
    "State": {
        "type": "object",
        "properties": {"ledger": {"type": "object", "properties": {
            "balanced": {"type": "boolean",
                         "description": "Whether every ledger transaction sums to zero."}}}}},
    "Reset": {"type": "object"},
    "Rotation": ROTATION,
}


def _egm_operations(paths: EgmPaths) -> dict[str, dict[str, Any]]:
    """The `[cms.egm]` calls, at their default (the reference CMS's) paths."""
    def at(template: str | None) -> str:
        assert template is not None
        return template.replace("{egm_id}", "{egmId}")

    return {
        at(paths.read): {"parameters": [EGM_ID], "get": {
            "operationId": "readEgm", "x-scanpay-hook": "cms.egm.read", "security": CMS_AUTH,
            "summary": "The EGM's meter, limit, state and currency",
            "responses": {"200": _json(_ref("EgmView"), "The EGM now."),
                          "401": CMS_401, "404": _problem("No such EGM.")}}},
        at(paths.acquire_qr): {"parameters": [EGM_ID], "post": {
            "operationId": "acquireQr", "x-scanpay-hook": "cms.egm.acquire_qr",
            "security": CMS_AUTH,
            "summary": "Get a fresh QR token from Trustly for this EGM now, show it, answer it",
            "description": "No request body. Each call shows a new, unused QR: the harness "
                           "calls it before every payment, including right after a QR was "
                           "paid. The CMS must ask the harness's Trustly (the QR Code API at "
                           "the target file's `[trustly]` host and port). The QRs it "
                           "replaces stay fundable until used or expired.",
            "responses": {"200": _json(_ref("ShownQr"), "What the EGM shows now."),
                          "401": CMS_401, "404": _problem("No such EGM.")}}},
        at(paths.qr_png): {"parameters": [EGM_ID], "get": {
            "operationId": "qrImage", "x-scanpay-hook": "cms.egm.qr_png", "security": [],
            "summary": "The QR the EGM shows now, as a PNG (no credentials sent)",
            "responses": {"200": {"description": "One QR code whose text is the shown url.",
                                  "content": {"image/png": {"schema": {
                                      "type": "string", "contentMediaType": "image/png"}}}}}}},
        at(paths.screen): {"parameters": [EGM_ID], "get": {
            "operationId": "egmScreen", "x-scanpay-hook": "cms.egm.screen", "security": [],
            "summary": "The EGM's screen page (informative; no credentials sent)",
            "responses": {"200": {"description": "An HTML page.", "content": {
                "text/html": {"schema": {"type": "string"}}}}}}},
    }


# What each control operation answers and takes; keyed like HOOK_OPERATIONS' entries.
_CONTROL: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/_sim/clock"): {
        "operationId": "readClock", "summary": "The CMS's now",
        "responses": {"200": _json(_ref("Clock"), "The CMS's clock.")}},
    ("POST", "/_sim/clock"): {
        "operationId": "moveClock", "summary": "Move the CMS's clock forward",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": _ref("ClockMove"), "example": {"advance": 60}}}},
        "responses": {"200": _json(_ref("Clock"), "The clock after the move."),
                      "400": _problem("Not a valid move.")}},
    ("POST", "/_sim/egms/{egmId}"): {
        "operationId": "setEgmState", "summary": "Put an EGM into a state",
        "parameters": [EGM_ID],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": _ref("EgmStateChange"), "example": {"state": "IDLE"}}}},
        "description": "The harness calls it only for the EGMs of `cms.egm_ids` (the preflight "
                       "checked they exist; its probe puts the first EGM into the state it is "
                       "already in). For an EGM the CMS does not know the reference answers "
                       "404 EGM_NOT_FOUND; the harness never asks, so any 4xx will do.",
        "responses": {"200": _json({"type": "object"}, "Changed (any JSON object)."),
                      "400": _problem("Unknown state."),
                      "404": _problem("No such EGM (the reference: EGM_NOT_FOUND).")}},
    ("GET", "/_sim/faults"): {
        "operationId": "listFaults", "summary": "The rules in force (the preflight's probe)",
        "responses": {"200": _json(_ref("FaultList"), "Every rule still in force.")}},
    ("POST", "/_sim/faults"): {
        "operationId": "addFault", "summary": "Declare a fault on the CMS's own API",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": _ref("FaultRule"), "example": {
                "method": "POST", "path": "/cws/v1/fundings", "action": "apply_then_drop",
                "times": 1}}}},
        "responses": {"201": _json(_ref("FaultList"), "The rule is in force."),
                      "400": _problem("A rule the CMS cannot honour.")}},
    ("DELETE", "/_sim/faults"): {
        "operationId": "clearFaults", "summary": "Remove every declared fault",
        "responses": {"200": _json(_ref("Deleted"), "How many rules were removed.")}},
    ("GET", "/_sim/journal"): {
        "operationId": "readJournal", "summary": "The CMS's requests and answers",
        "parameters": [
            {"name": "limit", "in": "query", "schema": {
                "type": "integer", "minimum": 1, "maximum": MAX_QUERY_LIMIT, "default": 200},
             "example": 1,
             "description": "At most this many entries. Without `since`: the latest `limit` "
                            "entries (so `limit=1` is the newest); with `since`: the first "
                            "`limit` entries after it."},
            {"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0},
             "example": 0,
             "description": "An entry `id`: only entries with a greater id, oldest first "
                            "(the harness pages forward with the last id it got)."},
            {"name": "path", "in": "query", "schema": {"type": "string"},
             "description": "Only entries whose path starts with this."},
            {"name": "correlationId", "in": "query", "schema": {"type": "string"},
             "description": "Only entries of this `X-Correlation-Id`."}],
        "responses": {"200": _json(_ref("Journal"), "Entries in increasing id order."),
                      "400": _problem("A bad query parameter.")}},
    ("POST", "/_sim/reset"): {
        "operationId": "reset", "summary": "Forget the CMS's test data",
        "description": "Only the pytest plugin's `scanpay_clean` calls it, before each test; "
                       "the catalogue never does. What the harness relies on: the answer is "
                       "200; the clock is left where it is; afterwards the EGMs of "
                       "`cms.egm_ids` still exist and are IDLE, no fault rule is left in "
                       "force, and the `[cms].auth` and admin credentials still work (an "
                       "access token issued before may be refused with 401: the harness then "
                       "fetches a new one). Tests use fresh players and compare meters before "
                       "and after, so what else is forgotten is the CMS's choice. The "
                       "reference forgets everything but the clock: meters, QRs shown and "
                       "used, limits and their usage, fundings and the ledger, issued access "
                       "tokens, the journal and the fault rules, then seeds its demo casino "
                       "again (meters at 0).",
        "responses": {"200": _json(_ref("Reset"), "Reset done.")}},
    ("GET", "/_sim/fundings"): {
        "operationId": "listFundings", "summary": "Every decided funding, oldest first",
        "parameters": [{"name": "since", "in": "query", "schema": INSTANT,
                        "example": "2026-11-25T21:00:00.000Z",
                        "description": "Only fundings decided at or after this instant, read "
                                       "on the CMS's own clock (what `GET /_sim/clock` says), "
                                       "not the harness's or Trustly's."}],
        "responses": {"200": _json(_ref("Fundings"), "The decided fundings."),
                      "400": _problem("`since` is not an instant.")}},
    ("GET", "/_sim/state"): {
        "operationId": "readState", "summary": "A dump; the harness reads only `ledger`",
        "description": "Optional even with the `fundings` hook: a 404 is fine. When the "
                       "answer has `ledger.balanced`, REC-002 checks it is true.",
        "responses": {"200": _json(_ref("State"), "The CMS's state."),
                      "404": _problem("Not offered.")}},
    ("POST", "/_sim/qr/rotate"): {
        "operationId": "rotateQrs", "summary": "Run one QR rotation pass now",
        "description": "Rotate every QR whose rotation time has come on the CMS's clock, "
                       "before answering. Without this hook the harness waits (bounded) for "
                       "the CMS's own rotation after moving its clock.",
        "responses": {"200": _json(_ref("Rotation"), "The pass is done.")}},
}


def _control_operations() -> dict[str, dict[str, Any]]:
    items: dict[str, dict[str, Any]] = {}
    for hook in HOOKS:
        for method, path in HOOK_OPERATIONS[hook]:
            spec = dict(_CONTROL[(method, path)])
            spec["responses"] = {**spec["responses"], "401": ADMIN_401}
            operation = {**spec, "x-scanpay-hook": hook, "security": ADMIN_AUTH,
                         "tags": [hook]}
            items.setdefault(path, {})[method.lower()] = operation
    return items


INFO_DESCRIPTION = """\
The calls `scanpay certify` and the pytest plugin make to a partner's CMS besides its
Funding and Daily Limits APIs (those are in cms.openapi.json): the EGM calls the target
file's `[cms.egm]` table configures, and the control hooks its `[control]` table declares.
Paths are the defaults (the reference sim_cms's); a partner may configure other EGM paths
and another control base URL, but the control paths are fixed. The semantics are in
docs/partner-contract.md.
"""


def build_document() -> dict[str, Any]:
    """The whole partner-hooks OpenAPI document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "scanpay-sim partner hooks", "version": "1.0.0",
                 "description": INFO_DESCRIPTION},
        "servers": [{"url": "http://127.0.0.1:8720",
                     "description": "The reference sim_cms (`scanpay serve`)."}],
        "tags": [{"name": hook, "description": HOOK_MEANINGS[hook]} for hook in HOOKS],
        "paths": {**_egm_operations(EgmPaths()), **_control_operations()},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "cmsOAuth": {"type": "oauth2", "description": "`[cms].auth` kind "
                             "oauth2_client_credentials: a Bearer token from the token path "
                             "(client_id:client_secret as Basic); on a 401 the harness gets a "
                             "new token and repeats the call once.",
                             "flows": {"clientCredentials": {
                                 "tokenUrl": "/cws/v1/oauth/token", "scopes": {}}}},
                "cmsBasic": {"type": "http", "scheme": "basic",
                             "description": "`[cms].auth` kind basic: username:password."},
                "cmsApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                              "description": "`[cms].auth` kind api_key: the key in the "
                                             "configured header (X-API-Key by default)."},
                "adminBearer": {"type": "http", "scheme": "bearer",
                                "description": "`Authorization: Bearer <control.admin_token>`"},
            }},
    }


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every (METHOD, path template) of a document with its operation object."""
    methods = {"get", "put", "post", "delete", "patch"}
    return {(method.upper(), path): item[method]
            for path, item in document["paths"].items() for method in item if method in methods}


def template_pattern(template: str) -> re.Pattern[str]:
    """A regex matching concrete paths of an OpenAPI path template."""
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
