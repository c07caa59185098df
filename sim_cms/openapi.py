"""The OpenAPI 3.1 document of the CWS API (everything under `/cws/v1`), at `GET /openapi.json`.

This is the document a casino hands to Trustly: operations, exact schemas, every status and
error code, auth, idempotency, timeouts and retries, daily-limit semantics. The same document
(built with default settings) is written to docs/api/cms.openapi.json; a test keeps the two
equal and checks real responses against it, and schemathesis fuzzes the app against it, so
neither can drift from the code. Schemas live in `sim_cms.openapi_schemas`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from sim_cms import scopes
from sim_cms.context import cms
from sim_cms.openapi_schemas import (
    EGM_ID,
    FORM,
    JSON,
    REF,
    TRANSACTION_ID,
    UBAI,
    component_schemas,
    header,
    json_response,
    problem,
)
from sim_cms.settings import DEFAULT_PORT, CmsSettings
from simkit.money import Money

bp = Blueprint("cms_openapi", __name__)

PUBLISHED = "docs/api/cms.openapi.json"
TOKEN_URL = "/cws/v1/oauth/token"  # noqa: S105 - a path, not a secret
BEARER: list[dict[str, list[str]]] = [{"cwsOAuth": []}]
RETRY_AFTER = {"Retry-After": header("Seconds.", {"type": "string", "pattern": "^[0-9]+$"},
                                     required=True)}
REPLAYED = {"Idempotent-Replayed": header(
    "`true` when this is the stored answer to an earlier request with this transactionId.",
    {"type": "string", "enum": ["true"]}, required=False)}
ROUTE_404 = "NOT_FOUND"  # no route: e.g. a path parameter that is empty or contains '/'


def _overview(s: CmsSettings) -> str:
    """The prose a partner reads first: conventions, auth, idempotency, retries, limits."""
    default, cap = Money(s.default_daily_limit, s.currency), Money(s.max_daily_limit, s.currency)
    return f"""\
The reference casino CMS's Cashless Wagering API (CWS), called by Trustly's TPAS.

## Conventions
JSON in and out. Money is integer minor units plus an ISO 4217 currency (`"amount": 2000,
"currency": "{s.currency}"` is {Money(2000, s.currency).display()}); floats are refused.
Instants are UTC ISO-8601 with milliseconds. Errors are RFC 9457 `application/problem+json`
with a stable `code` (UPPER_SNAKE, never renamed): match on `code` and the HTTP status, never
on `detail`. A malformed request (400, 413, 415) changes nothing. No input causes a 5xx; 500
means a defect (or, in the simulator, a fault injected through its control API).

## Authentication
OAuth 2.0 client credentials: `POST {TOKEN_URL}` with HTTP Basic `client_id:client_secret`
and `grant_type=client_credentials` returns an opaque Bearer token valid
{s.access_token_ttl_s} s (`expires_in`). Send it as `Authorization: Bearer <token>` on every
other call. 401 `TOKEN_EXPIRED`: the token's lifetime is over; fetch a new token and resend
the same request once (a partner's CMS must answer an expired token with exactly this status
and code, and a `WWW-Authenticate: Bearer ...` challenge: `scanpay certify` FUND-005 checks
both). 401 `INVALID_TOKEN`: no, malformed or unknown token; fetching a new
one helps only if the old one was lost. Refresh ahead of expiry (for example when 80 % of
`expires_in` has passed) so no funding waits on a token round trip. Tokens are never cached
(`Cache-Control: no-store`). Every 401 carries `WWW-Authenticate`.

Each client is allowed a set of scopes, and each operation needs one (its `security`):
{_scope_list()}. A token carries the scopes granted when it was issued: all the client's, or
the subset asked for with the space-separated `scope` parameter (asking for one the client
lacks: 400 `INVALID_SCOPE`); the token response names them in `scope`. A call without the
operation's scope is refused with 403 `INSUFFICIENT_SCOPE` (`scope` names the one needed)
and changes nothing; a new token does not help. TPAS's client needs `{scopes.FUNDINGS}` and
`{scopes.LIMITS_READ}`; `{scopes.LIMITS_WRITE}` lifts or sets a self-exclusion, so it belongs
to the casino's own staff, not to TPAS. After {s.client_lockout_threshold} failed client
authentications within {s.client_lockout_window_s} s ({_lockout_key(s)}) the
token endpoint answers 429 `TOO_MANY_ATTEMPTS` with `Retry-After` for {s.client_lockout_s} s,
even to the right secret; a success does not reset the count.

## Network
Recommended client timeouts: connect 2 s, read 5 s. A funding must be answered within TPAS's
read timeout (the partner profile's `read_timeout_s`): a later answer is a lost one, which
TPAS follows with a status inquiry and a retry (`scanpay certify` FUND-013 times fundings
against the target file's `read_timeout_s`). IP allow-listing: this reference CMS does
not enforce one; a production CMS should accept CWS calls only from Trustly's TPAS egress IP
addresses (ask Trustly for the list), over TLS 1.2 or later, in addition to OAuth.

## Fundings: idempotency and retries
`transactionId` is the idempotency key; TPAS creates it once per payment and persists it
before the first send. The first request with a given id is decided once, and the decision
(the credit, or a rejection such as `EGM_BUSY`) is stored with its exact answer. Sending the
same id with the same six fields again returns that stored answer byte for byte, with the
header `Idempotent-Replayed: true`; the credit is never applied twice. The same id with any
field changed is refused with 422 `IDEMPOTENCY_KEY_REUSED` (nothing changes). A retry that
arrives while the first request is still being decided waits for it and then gets the
replay; if it cannot, it gets 409 `FUNDING_IN_PROGRESS`: wait briefly and retry the same
request. Malformed requests (400, 413, 415) are not stored: the id stays free.

On a timeout, a dropped connection or a 5xx without a stored decision, do not guess: ask
`GET /cws/v1/fundings/{{transactionId}}`. 200 gives the decided outcome and the original
answer. 404 `FUNDING_NOT_FOUND` means nothing was decided under that id, so resending the
same request (same transactionId, same body) is safe. Repeat with backoff (for example 0.5,
1, 2, 4 s; about five attempts) until the outcome is definite; never switch to a new
transactionId for the same payment. Rejections (404 `EGM_NOT_FOUND`, 409, 422, 503
`EGM_OFFLINE`) are decided and stored: retrying them replays the same answer.

## Daily limits
Each UBAI has a daily limit: the one set through `PUT /cws/v1/limits/{{ubai}}`, else the
default {default.display()} (`source: DEFAULT`). No limit may exceed the cap
{cap.display()} (422 `LIMIT_ABOVE_CAP`); 0 self-excludes. Usage counts per gaming day, which
starts at {s.day_start_hour:02d}:00 local time in {s.time_zone}; across a daylight-saving
change the boundary stays at that local wall time, so such a gaming day lasts 23 or 25 hours.
A funding that would take the day's usage above the limit is refused atomically (422
`DAILY_LIMIT_EXCEEDED` with `remaining`), also when many race. Editing a limit never resets
usage: lowered below today's usage, it leaves `remainingToday` at 0.

## Reference values and the contract
This document describes the reference CMS, and the values below are its choices (this
instance's configuration), not requirements: a partner's CMS may choose differently and still
pass `scanpay certify`. The access token's lifetime ({s.access_token_ttl_s} s, `expires_in`)
and form (43 base64url characters); the default daily limit ({default.display()}) and the cap
({cap.display()}); the gaming day ({s.day_start_hour:02d}:00 in {s.time_zone}); the QR
rotation buffer ({s.rotation_buffer_s} s before `expiresAt`, at least 10 s for SCAN-004); the
grace after a QR token's expiry during which it may still be funded (`funding_grace_s`,
{s.funding_grace_s} s; a grace is not required, and any grace up to 1 h passes QR-002); the
problem `type` URIs; the currency ({s.currency}); the bound of +/-10^12 on `amount`. The
contract is the status codes and `code`s certify checks, written out scenario by scenario in
docs/conformance.md and docs/partner-contract.md. A default of 50,000 and a cap of 600,000,
for example, pass as long as the cap admits EGM-005's daily limit (an EGM's `creditLimit -
creditMeter + 1`).
"""


def _lockout_key(s: CmsSettings) -> str:
    if s.client_lockout_scope == "client_id":
        return "per client id, from any address"
    return "per client id and caller address"


def _scope_list() -> str:
    return "; ".join(f"`{name}`: {text}" for name, text in scopes.SCOPES.items())


def _needs(scope: str) -> list[dict[str, list[str]]]:
    """The `security` of an operation that needs `scope`."""
    return [{"cwsOAuth": [scope]}]


def _auth_401() -> dict[str, Any]:
    return problem(401, ["INVALID_TOKEN", "TOKEN_EXPIRED"],
                   "Missing, unknown or expired Bearer token; on TOKEN_EXPIRED fetch a new "
                   "token and resend.",
                   headers={"WWW-Authenticate": header(
                       "RFC 6750 challenge.", {"type": "string", "pattern": "^Bearer "},
                       required=True)})


def _too_large(s: CmsSettings) -> dict[str, Any]:
    return problem(413, ["PAYLOAD_TOO_LARGE"], f"Body over {s.max_body_bytes} bytes.")


def _common(s: CmsSettings, *, body: bool = False) -> dict[str, Any]:
    """Responses every Bearer operation shares (413/415 only for those with a JSON body)."""
    responses = {"401": _auth_401(),
                 "403": problem(403, ["INSUFFICIENT_SCOPE"],
                                "The token was not granted the scope this operation needs "
                                "(`scope`); nothing changed.", required=("error", "scope"),
                                headers={"WWW-Authenticate": header(
                                    "RFC 6750 challenge with error=\"insufficient_scope\".",
                                    {"type": "string", "pattern": "^Bearer "},
                                    required=True)}),
                 "500": problem(500, ["INTERNAL_ERROR", "FAULT_INJECTED"],
                                "A defect, or a fault injected by the simulator's control "
                                "API. Retry with the same request.")}
    if body:
        responses["413"] = _too_large(s)
        responses["415"] = problem(415, ["UNSUPPORTED_MEDIA_TYPE"],
                                   "Content-Type is not application/json.")
    return responses


def _path(name: str, schema: dict[str, Any], example: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "example": example}


def _json_body(schema: str, example: dict[str, Any]) -> dict[str, Any]:
    return {"required": True,
            "content": {JSON: {"schema": {"$ref": REF + schema}, "example": example}}}


def _token_operation(s: CmsSettings) -> dict[str, Any]:
    form = {"schema": {"$ref": REF + "TokenRequest"},
            "example": {"grant_type": "client_credentials"}}
    return {
        "operationId": "issueAccessToken",
        "summary": "Get a Bearer access token (OAuth 2.0 client credentials)",
        "description": (
            "Authenticate the client with HTTP Basic (`client_id:client_secret`, each "
            "form-urlencoded as RFC 6749 §2.3.1 asks; plain values work too). `client_id` and "
            "`client_secret` as body parameters are accepted instead of Basic (not both). The "
            f"body is form-urlencoded; a JSON object of strings is accepted too. The token "
            f"lives {s.access_token_ttl_s} s and carries the client's scopes, or those asked "
            "for in `scope`. 400 and 401 problems also carry the RFC 6749 §5.2 `error` name, "
            "so a plain OAuth 2.0 client understands them. After "
            f"{s.client_lockout_threshold} failed client authentications within "
            f"{s.client_lockout_window_s} s ({_lockout_key(s)}) the client id is refused "
            f"(429) for {s.client_lockout_s} s."),
        "security": [{"clientBasic": []}],
        "requestBody": {"required": True, "content": {FORM: form, JSON: form}},
        "responses": {
            "200": json_response("Token issued.", "TokenResponse", headers={
                "Cache-Control": header("Never cache tokens.", {"const": "no-store"},
                                        required=True)}),
            "400": problem(400, ["INVALID_REQUEST", "UNSUPPORTED_GRANT_TYPE", "INVALID_SCOPE"],
                           "grant_type missing or not client_credentials, a parameter "
                           "repeated or not a string, two authentication methods, a body "
                           "that is neither form nor a JSON object, or a scope asked for "
                           "that the client is not allowed.", required=("error",)),
            "401": problem(401, ["INVALID_CLIENT"], "Unknown client or wrong secret.",
                           required=("error",), headers={"WWW-Authenticate": header(
                               "Basic challenge.", {"type": "string"}, required=True)}),
            "413": _too_large(s),
            "429": problem(429, ["TOO_MANY_ATTEMPTS"], "Too many failed client "
                           "authentications: wait `Retry-After` seconds.",
                           headers=RETRY_AFTER),
            "500": _common(s)["500"],
        },
    }


def _funding_example(s: CmsSettings) -> dict[str, Any]:
    return {"transactionId": "tpas-7f3c9a", "egmId": "EGM-001", "amount": 2000,
            "currency": s.currency, "ubai": "ubai-alice", "qrTokenId": "b64url-code"}


def _create_funding(s: CmsSettings) -> dict[str, Any]:
    return {
        "operationId": "createFunding",
        "summary": "Credit an EGM's meter once per transactionId",
        "description": (
            "Applies the credit to the EGM's meter at once, in one ledger transaction, or "
            "refuses it. Checked in this order: EGM exists and is IDLE, amount > 0 and the "
            "EGM's currency, QR token displayed on this EGM (also one rotated away, until "
            "Trustly's expiry), the EGM's credit cap, the UBAI's daily limit. Every decision, "
            "rejections included, is stored under the transactionId and replayed to retries "
            "(`Idempotent-Replayed: true`); see the overview for the retry policy. A QR token "
            "pays one funding: it is consumed only by an applied funding (201), and a second "
            "transactionId naming it is then refused (422 QR_TOKEN_USED). A refused funding "
            "(any 4xx, e.g. 422 INVALID_AMOUNT) does not consume it: `scanpay certify` "
            "FUND-008 refuses amounts 0 and -100 on a QR, then funds the same QR (201)."),
        "security": _needs(scopes.FUNDINGS),
        "requestBody": _json_body("FundingRequest", _funding_example(s)),
        "responses": {
            "201": json_response("Applied; the credit is on the meter.", "FundingApplied",
                                 headers=REPLAYED),
            "400": problem(400, ["INVALID_REQUEST", "VALIDATION_ERROR"],
                           "Not a JSON object, or a field missing, of the wrong type or form "
                           "(`field` names it). Nothing stored."),
            **_common(s, body=True),
            "404": problem(404, ["EGM_NOT_FOUND"], "No such EGM (stored decision).",
                           headers=REPLAYED, required=("transactionId",)),
            "409": problem(409, ["EGM_BUSY", "EGM_DOOR_OPEN", "EGM_TILT", "FUNDING_IN_PROGRESS"],
                           "The EGM is in a game, open or in tilt (stored decisions), or "
                           "another request with this transactionId is being decided (not "
                           "stored: retry the same request).",
                           headers=REPLAYED, required=("transactionId",)),
            "422": problem(422, ["INVALID_AMOUNT", "QR_TOKEN_MISMATCH", "QR_TOKEN_USED",
                                 "QR_TOKEN_EXPIRED", "CREDIT_LIMIT_EXCEEDED",
                                 "DAILY_LIMIT_EXCEEDED", "IDEMPOTENCY_KEY_REUSED"],
                           "Well-formed but refused: amount zero or negative "
                           "(INVALID_AMOUNT, `field: amount`) or a currency that is not the "
                           "EGM's (INVALID_AMOUNT, `field: currency`), QR token not displayed "
                           "on this EGM, already paid for by another applied funding, or "
                           "expired more than `funding_grace_s` ago (this CMS's: "
                           f"{s.funding_grace_s} s; a partner's grace may be shorter, even "
                           "0), "
                           "the meter's cap, the UBAI's daily limit (stored decisions, "
                           "`remaining` tells what is left), or the transactionId was used "
                           "for a different request (not stored).",
                           headers=REPLAYED, required=("transactionId",)),
            "503": problem(503, ["EGM_OFFLINE"], "The EGM is offline (stored decision: a "
                           "retry replays it; use a new payment once the EGM is back).",
                           headers=REPLAYED, required=("transactionId",)),
        },
    }


def _get_funding(s: CmsSettings) -> dict[str, Any]:
    return {
        "operationId": "getFunding",
        "summary": "Status inquiry: was this transactionId applied, rejected, or never decided?",
        "description": (
            "For a caller whose POST timed out or lost its connection. 200 carries the "
            "decision and the original answer (`httpStatus`, `response`); 404 "
            "FUNDING_NOT_FOUND means nothing was decided, so the same POST is safe to resend."),
        "security": _needs(scopes.FUNDINGS),
        "parameters": [_path("transactionId", TRANSACTION_ID, "tpas-7f3c9a")],
        "responses": {
            "200": json_response("The stored decision.", "FundingStatus"),
            "400": problem(400, ["VALIDATION_ERROR"], "The id is not a transactionId."),
            **_common(s),
            "404": problem(404, ["FUNDING_NOT_FOUND", ROUTE_404],
                           "Never decided: safe to retry the POST with the same transactionId "
                           "(NOT_FOUND: the URL names no operation, e.g. an empty id)."),
        },
    }


def _limit_responses(s: CmsSettings, *extra: str, body: bool = False) -> dict[str, Any]:
    responses = {
        "200": json_response("The UBAI's limit, today's usage and what remains.", "LimitView"),
        "400": problem(400, ["INVALID_UBAI", *(["INVALID_REQUEST"] if body else [])],
                       "The ubai does not have the UBAI form" + (
                           ", or the body is not a JSON object of dailyLimit (integer >= 0) "
                           "and optional currency (`field` names the culprit)." if body
                           else ".")),
        **_common(s, body=body),
        "404": problem(404, [*extra, ROUTE_404],
                       "NOT_FOUND: the URL names no operation (e.g. an empty ubai)."),
    }
    return responses


def _limit_operations(s: CmsSettings) -> dict[str, Any]:
    ubai = [_path("ubai", UBAI, "ubai-alice")]
    change = _json_body("LimitChange", {"dailyLimit": 50000, "currency": s.currency})
    refused = problem(422, ["LIMIT_ABOVE_CAP", "CURRENCY_MISMATCH"],
                      f"Above the cap ({s.max_daily_limit}) or not the casino's currency.")
    return {
        "parameters": ubai,
        "get": {"operationId": "getDailyLimit", "summary": "Read a UBAI's daily limit",
                "description": "A UBAI with no limit set shows the default (`source: DEFAULT`).",
                "security": _needs(scopes.LIMITS_READ),
                "responses": _limit_responses(s)},
        "put": {"operationId": "setDailyLimit", "summary": "Create or replace a daily limit",
                "security": _needs(scopes.LIMITS_WRITE),
                "requestBody": change,
                "responses": {**_limit_responses(s, body=True), "422": refused, "201": {
                    **json_response("Created (the UBAI had only the default).", "LimitView"),
                    "headers": {"Location": header("The limit's URL.", {"type": "string"},
                                                   required=True)}}}},
        "patch": {"operationId": "updateDailyLimit", "summary": "Change a limit that is set",
                  "security": _needs(scopes.LIMITS_WRITE),
                  "description": "Modifies only: a UBAI on the default gets 404 "
                                 "LIMIT_NOT_FOUND (use PUT to create), so a PATCH racing a "
                                 "DELETE cannot silently recreate the limit.",
                  "requestBody": change,
                  "responses": {**_limit_responses(s, "LIMIT_NOT_FOUND", body=True),
                                "422": refused}},
        "delete": {"operationId": "deleteDailyLimit",
                   "summary": "Remove a limit: the default applies again",
                   "security": _needs(scopes.LIMITS_WRITE),
                   "description": "Idempotent: 200 with the view also when nothing was set. "
                                  "Today's usage is kept.",
                   "responses": _limit_responses(s)},
    }


def _egm_operations(s: CmsSettings) -> dict[str, Any]:
    egm_id = [_path("egmId", EGM_ID, "EGM-001")]
    not_found = problem(404, ["EGM_NOT_FOUND", ROUTE_404], "No such EGM.")
    return {
        "/cws/v1/egms": {"get": {
            "operationId": "listEgms", "summary": "Every EGM with state and credit meter",
            "security": _needs(scopes.EGMS),
            "responses": {"200": json_response("The casino floor, by id.", "EgmList"),
                          **_common(s)}}},
        "/cws/v1/egms/{egmId}": {"parameters": egm_id, "get": {
            "operationId": "getEgm", "summary": "One EGM: state, credit meter and cap",
            "security": _needs(scopes.EGMS),
            "responses": {"200": json_response("The EGM.", "Egm"), **_common(s),
                          "404": not_found}}},
        "/cws/v1/egms/{egmId}/qr": {"parameters": egm_id, "post": _qr_operation(s, not_found)},
    }


def _qr_operation(s: CmsSettings, not_found: dict[str, Any]) -> dict[str, Any]:
    trustly = ("Trustly gave no usable QR token; the CMS keeps showing the previous QR while "
               "it is valid and retries after `retryAfter` s.")
    return {
        "operationId": "acquireQr",
        "security": _needs(scopes.EGMS),
        "summary": "Get a new QR token from Trustly for this EGM now and show it",
        "description": "Normally the CMS rotates each EGM's QR by itself at `rotatesAt`; this "
                       "forces an acquisition (no request body).",
        "responses": {
            "200": json_response("What the EGM shows now.", "QrDisplay"), **_common(s),
            "404": not_found,
            "502": problem(502, ["TRUSTLY_UNAVAILABLE"], trustly + " Trustly failed."),
            "503": problem(503, ["TRUSTLY_UNAVAILABLE"], trustly + " Trustly said when to come "
                           "back.", headers={"Retry-After": header(
                               "Seconds.", {"type": "string", "pattern": "^[0-9]+$"},
                               required=True)}),
        },
    }


def _paths(s: CmsSettings) -> dict[str, Any]:
    paths: dict[str, Any] = {
        TOKEN_URL: {"post": _token_operation(s)},
        "/cws/v1/fundings": {"post": _create_funding(s)},
        "/cws/v1/fundings/{transactionId}": {"get": _get_funding(s)},
        "/cws/v1/limits/{ubai}": _limit_operations(s),
        **_egm_operations(s),
    }
    for item in paths.values():  # statuses in order, however the builders assembled them
        for operation in item.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"] = dict(sorted(operation["responses"].items()))
    return paths


def _security_schemes(s: CmsSettings) -> dict[str, Any]:
    return {
        "cwsOAuth": {
            "type": "oauth2",
            "description": f"Bearer token from {TOKEN_URL}, valid {s.access_token_ttl_s} s. "
                           "401 TOKEN_EXPIRED: fetch a new one and resend. 403 "
                           "INSUFFICIENT_SCOPE: the token lacks the operation's scope.",
            "flows": {"clientCredentials": {"tokenUrl": TOKEN_URL,
                                            "scopes": dict(scopes.SCOPES)}},
        },
        "clientBasic": {"type": "http", "scheme": "basic",
                        "description": "OAuth client authentication: client_id:client_secret."},
    }


def build_document(settings: CmsSettings | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the CWS API for `settings` (defaults: the reference CMS)."""
    s = settings or CmsSettings(database_url="sqlite://")
    return {
        "openapi": "3.1.0",
        "info": {"title": "scanpay-sim reference CMS: Cashless Wagering API (CWS)",
                 "version": "1.0.0", "description": _overview(s)},
        "servers": [{"url": f"http://127.0.0.1:{DEFAULT_PORT}"}],
        "security": BEARER,
        "paths": _paths(s),
        "components": {"schemas": component_schemas(s),
                       "securitySchemes": _security_schemes(s)},
    }


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """Serve the document for this CMS's configuration."""
    return jsonify(build_document(cms().settings))


def write_document(path: str = PUBLISHED) -> None:
    """Write the reference document to `path` (how docs/api/cms.openapi.json is made)."""
    import json
    from pathlib import Path

    Path(path).write_text(json.dumps(build_document(), indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":  # python -m sim_cms.openapi docs/api/cms.openapi.json
    import sys

    write_document(sys.argv[1] if len(sys.argv) > 1 else PUBLISHED)
