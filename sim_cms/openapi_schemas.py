"""JSON Schemas and response builders of sim_cms's OpenAPI document (see `sim_cms.openapi`).

The patterns and bounds here are the ones the code enforces (`funding.requests._SHAPES`,
`limits.UBAI_PATTERN`, `egms.EGM_ID`, `simkit.money.MAX_MINOR`), so a request the document
calls valid is never refused as malformed, and every response validates against them.
Values that depend on the casino's configuration (currency, limit cap, token TTL) are taken
from `CmsSettings`, so the document a CMS serves describes that CMS; their descriptions say
they are the reference's choice, which a partner's CMS may make differently (the overview's
"Reference values and the contract" lists them), since docs/api/cms.openapi.json is also
what a partner reads to build a CMS that `scanpay certify` passes.
"""

from __future__ import annotations

from typing import Any

from sim_cms.egms import STATES
from sim_cms.settings import CmsSettings
from simkit.money import MAX_MINOR

REF = "#/components/schemas/"
PROBLEM_JSON = "application/problem+json"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

TRANSACTION_ID = {"type": "string", "pattern": r"^[A-Za-z0-9._:~-]{1,128}$",
                  "description": "The caller's idempotency key: 1-128 of A-Z a-z 0-9 . _ : ~ -"}
EGM_ID = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$",
          "description": "EGM id as Trustly accepts it: 1-64 of A-Z a-z 0-9 . _ : -, "
                         "starting with a letter or digit."}
UBAI = {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,128}$",
        "description": "Unique bank account identifier supplied by TPAS: "
                       "1-128 of A-Z a-z 0-9 . _ : -"}
QR_TOKEN_ID = {"type": "string", "pattern": r"^[!-~]{1,128}$",
               "description": "The code that ends the QR's url (1-128 visible ASCII)."}
CURRENCY = {"type": "string", "pattern": r"^[A-Z]{3}$", "description": "ISO 4217 code."}
INSTANT = {"type": "string", "format": "date-time",
           "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$",
           "description": "UTC with milliseconds, e.g. 2026-11-25T21:10:00.000Z"}
MINOR = {"type": "integer", "minimum": 0, "maximum": MAX_MINOR,
         "description": "Integer minor units (cents); never a float."}
POSITIVE_MINOR = {**MINOR, "minimum": 1}
# A funding's amount: any JSON integer up to 10**12 either way is well-formed (a schema-checking
# CMS must not answer 400 for 0 or -100: FUND-008 wants the decided 422 INVALID_AMOUNT).
FUNDING_AMOUNT = {
    "type": "integer", "minimum": -MAX_MINOR, "maximum": MAX_MINOR,
    "description": "Credit to apply, in minor units. Must be a JSON integer: 20.0, 1e3, "
                   "\"2000\" or true are malformed (400 VALIDATION_ERROR, nothing stored). "
                   "Zero or negative is well-formed but refused: 422 INVALID_AMOUNT with "
                   "`field: amount`, a decided outcome stored under the transactionId "
                   "(`scanpay certify` FUND-008 sends 0 and -100 and requires exactly that, "
                   "not a 400). Beyond +/-10^12 the reference answers 400 VALIDATION_ERROR "
                   "(its bound, `simkit.money.MAX_MINOR`); a partner may choose its own "
                   "bound, as long as an amount up to an EGM's `creditLimit` + 1 is taken "
                   "as well-formed (EGM-005 funds `creditLimit - creditMeter + 1` and needs "
                   "422 CREDIT_LIMIT_EXCEEDED for it)."}
GAMING_DAY = {"type": "string", "format": "date", "pattern": r"^\d{4}-\d\d-\d\d$",
              "description": "The casino's gaming day (local date it started on)."}

# Members a problem carries besides the RFC 9457 ones, with their types.
_EXTENSIONS: dict[str, dict[str, Any]] = {
    "field": {"type": "string", "description": "The request member (or path part) at fault."},
    "transactionId": {"type": "string", "description": "The funding the decision is about."},
    "egmId": {"type": "string"},
    "state": {"type": "string", "enum": list(STATES)},
    "expected": {"type": "string", "description": "The value that would have been accepted "
                                                   "(the EGM's currency, on INVALID_AMOUNT "
                                                   "with `field: currency`)."},
    "remaining": {**MINOR, "description": "What the UBAI may still be funded this gaming day."},
    "dailyLimit": MINOR, "gamingDay": GAMING_DAY, "cap": MINOR,
    "creditMeter": MINOR, "creditLimit": MINOR,
    "available": {**MINOR, "description": "What the EGM's meter can still take."},
    "error": {"type": "string", "enum": ["invalid_request", "invalid_client",
                                         "unsupported_grant_type", "invalid_scope",
                                         "insufficient_scope"],
              "description": "RFC 6749 §5.2 error name at the token endpoint; "
                             "`insufficient_scope` (RFC 6750 §3.1) on a 403."},
    "scope": {"type": "string", "description": "The scope the operation needs."},
    "retryAfter": {"type": "integer", "minimum": 0,
                   "description": "Seconds until the CMS itself asks Trustly again."},
    "trustlyStatus": {"type": ["integer", "null"],
                      "description": "HTTP status Trustly answered (null: no answer)."},
    "reason": {"type": "string", "enum": ["unauthorized", "forbidden", "rate_limited",
                                          "rejected", "server_error", "timeout",
                                          "connection", "malformed"],
               "description": "How the call to Trustly failed."},
}

# Members that a problem with this code always carries.
_CODE_MEMBERS: dict[str, list[str]] = {
    "VALIDATION_ERROR": ["field"], "INVALID_UBAI": ["field"],
    "EGM_NOT_FOUND": ["egmId"], "EGM_BUSY": ["egmId", "state"],
    "EGM_DOOR_OPEN": ["egmId", "state"], "EGM_TILT": ["egmId", "state"],
    "EGM_OFFLINE": ["egmId", "state"], "INVALID_AMOUNT": ["transactionId", "field"],
    "QR_TOKEN_MISMATCH": ["transactionId", "egmId"],
    "QR_TOKEN_USED": ["transactionId", "egmId", "fundedBy"],
    "QR_TOKEN_EXPIRED": ["transactionId", "egmId", "expiredAt"],
    "CREDIT_LIMIT_EXCEEDED": ["transactionId", "egmId", "creditMeter", "creditLimit",
                              "available"],
    "DAILY_LIMIT_EXCEEDED": ["transactionId", "remaining", "dailyLimit", "gamingDay"],
    "IDEMPOTENCY_KEY_REUSED": ["transactionId"], "FUNDING_IN_PROGRESS": ["transactionId"],
    "FUNDING_NOT_FOUND": ["transactionId"], "LIMIT_ABOVE_CAP": ["field", "cap"],
    "CURRENCY_MISMATCH": ["field", "expected"], "INVALID_CLIENT": ["error"],
    "UNSUPPORTED_GRANT_TYPE": ["error", "field"], "INVALID_SCOPE": ["error", "field"],
    "INSUFFICIENT_SCOPE": ["error", "scope"],
    "TRUSTLY_UNAVAILABLE": ["egmId", "retryAfter", "trustlyStatus", "reason"],
}


def _problem_schema() -> dict[str, Any]:
    """RFC 9457 problem details plus the stable `code` and the typed extension members."""
    by_code = [
        {"if": {"properties": {"code": {"const": code}}, "required": ["code"]},
         "then": {"required": members}}
        for code, members in _CODE_MEMBERS.items()
    ]
    return {
        "type": "object",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string", "format": "uri",
                     "description": "The reference's: https://scanpay-sim.dev/problems/<code "
                                    "in kebab case>. A partner's CMS may use its own URIs (or "
                                    "`about:blank`): `scanpay certify` reads only `code` and "
                                    "the HTTP status."},
            "title": {"type": "string", "description": "The HTTP reason phrase."},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string", "description": "For humans; do not parse."},
            "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$",
                     "description": "Stable machine-readable code; never renamed. "
                                    "CURRENCY_MISMATCH belongs to the Daily Limits API (a "
                                    "limit in another currency than the casino's); a funding "
                                    "in another currency than the EGM's is INVALID_AMOUNT "
                                    "with `field: currency`."},
            **_EXTENSIONS,
        },
        "allOf": by_code,
    }


def _token_request() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["grant_type"],
        "properties": {
            "grant_type": {"type": "string", "enum": ["client_credentials"]},
            "scope": {"type": "string",
                      "description": "Space-separated scopes to ask for, a subset of the "
                                     "client's; absent: all the client's scopes."},
        },
        "additionalProperties": {"type": "string"},
        "description": "Each parameter at most once, as a string (RFC 6749 §3.2); unknown "
                       "parameters are ignored.",
    }


def _token_response(settings: CmsSettings) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in", "scope"],
        "additionalProperties": False,
        "properties": {
            "access_token": {"type": "string", "pattern": "^[A-Za-z0-9_-]{43}$",
                             "description": "Opaque; send as Bearer. The pattern is the "
                                            "reference's form (256 random bits, 43 base64url "
                                            "characters); a partner's token may have any "
                                            "form: TPAS and `scanpay certify` never look "
                                            "inside it."},
            "token_type": {"const": "Bearer"},
            "expires_in": {"const": settings.access_token_ttl_s,
                           "description": "Lifetime in seconds: this CMS's "
                                          "`access_token_ttl_s` (the reference's default is "
                                          "300). A partner chooses its own lifetime; it must "
                                          "be a JSON integer, and the token must be refused "
                                          "with 401 TOKEN_EXPIRED once that many seconds "
                                          "have passed on the CMS's clock (FUND-005 and "
                                          "PAY-004 move the clock `expires_in` + 1 s)."},
            "scope": {"type": "string", "pattern": "^([a-z:]+( [a-z:]+)*)?$",
                      "description": "The scopes granted, space-separated."},
        },
    }


def _funding_request(settings: CmsSettings) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["transactionId", "egmId", "amount", "currency", "ubai", "qrTokenId"],
        "properties": {
            "transactionId": TRANSACTION_ID, "egmId": EGM_ID,
            "amount": FUNDING_AMOUNT,
            "currency": {**CURRENCY, "description": (
                "ISO 4217 code: three upper-case letters, else malformed (400 "
                "VALIDATION_ERROR; FUND-008 sends `usd`). It should be the EGM's currency "
                f"(`currency` of the EGM; every EGM of this CMS holds {settings.currency}). "
                "A well-formed code that is not the EGM's is a decided refusal stored under "
                "the transactionId, nothing applied: the reference answers 422 INVALID_AMOUNT "
                "with `field: currency` and `expected` (the EGM's currency). `scanpay "
                "certify` (FUND-012, EUR on a USD EGM) accepts any 4xx that moves no money, "
                "and, when the status inquiry knows the id, requires it to say REJECTED.")},
            "ubai": UBAI, "qrTokenId": QR_TOKEN_ID,
        },
        "additionalProperties": True,
        "description": "Other members are ignored and are not part of the idempotency key.",
    }


def _funding_applied() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["transactionId", "status", "egmId", "amount", "currency", "creditMeter",
                     "appliedAt"],
        "additionalProperties": False,
        "properties": {
            "transactionId": TRANSACTION_ID, "status": {"const": "APPLIED"}, "egmId": EGM_ID,
            "amount": POSITIVE_MINOR, "currency": CURRENCY,
            "creditMeter": {**MINOR, "description": "The EGM's meter after this credit."},
            "appliedAt": INSTANT,
        },
    }


def _funding_status() -> dict[str, Any]:
    applied = {"properties": {"status": {"const": "APPLIED"}}}
    return {
        "type": "object",
        "required": ["transactionId", "status", "httpStatus", "egmId", "amount", "currency",
                     "decidedAt", "response"],
        "additionalProperties": False,
        "properties": {
            "transactionId": TRANSACTION_ID,
            "status": {"type": "string", "enum": ["APPLIED", "REJECTED"]},
            "httpStatus": {"type": "integer", "description": "What the original POST got."},
            "code": {"type": "string", "description": "The rejection's code."},
            "egmId": {"type": "string"}, "amount": {"type": "integer"}, "currency": CURRENCY,
            "decidedAt": INSTANT,
            "response": {"type": "object", "description": "The original answer's body."},
        },
        "if": applied,
        "then": {"properties": {"httpStatus": {"const": 201},
                                "response": {"$ref": REF + "FundingApplied"}},
                 "not": {"required": ["code"]}},
        "else": {"required": ["code"],
                 "properties": {"httpStatus": {"minimum": 400, "maximum": 599},
                                "response": {"$ref": REF + "Problem"}}},
    }


def _limit_change(settings: CmsSettings) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["dailyLimit"],
        "additionalProperties": False,
        "properties": {
            "dailyLimit": {"type": "integer", "minimum": 0,
                           "maximum": settings.max_daily_limit,
                           "description": "Minor units per gaming day; 0 self-excludes. "
                                          "A JSON integer (20.0 is refused, 400); above "
                                          "the cap (this CMS's `max_daily_limit`; the "
                                          "reference's default is 1,000,000, a partner "
                                          "sets its own): 422 LIMIT_ABOVE_CAP. The cap must "
                                          "admit `creditLimit - creditMeter + 1` of every "
                                          "EGM the harness funds, or EGM-005 is skipped."},
            "currency": {"type": "string", "enum": [settings.currency],
                         "description": "Optional; the casino's currency."},
        },
    }


def _limit_view() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["ubai", "dailyLimit", "currency", "usedToday", "remainingToday",
                     "gamingDay", "updatedAt", "source"],
        "additionalProperties": False,
        "properties": {
            "ubai": UBAI, "dailyLimit": MINOR, "currency": CURRENCY,
            "usedToday": {**MINOR, "description": "Funded on the current gaming day."},
            "remainingToday": {**MINOR, "description": "max(0, dailyLimit - usedToday)."},
            "gamingDay": GAMING_DAY,
            "updatedAt": {"oneOf": [INSTANT, {"type": "null"}],
                          "description": "When the limit was last set; null for DEFAULT."},
            "source": {"type": "string", "enum": ["DEFAULT", "SET"]},
        },
    }


def _egm() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["id", "name", "state", "creditMeter", "creditLimit", "currency"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"}, "name": {"type": "string"},
            "state": {"type": "string", "enum": list(STATES),
                      "description": "Only IDLE accepts credit."},
            "creditMeter": MINOR,
            "creditLimit": {"type": "integer", "minimum": 0,
                            "description": "The meter's cap (CREDIT_LIMIT_EXCEEDED above)."},
            "currency": CURRENCY,
        },
    }


def _qr_display(settings: CmsSettings) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["egmId", "url", "qrTokenId", "expiresAt", "rotatesAt"],
        "additionalProperties": False,
        "properties": {
            "egmId": EGM_ID, "url": {"type": "string", "format": "uri"},
            "qrTokenId": QR_TOKEN_ID, "expiresAt": INSTANT,
            "rotatesAt": {**INSTANT, "description": (
                "expiresAt minus the rotation buffer: this CMS's `rotation_buffer_s` "
                f"({settings.rotation_buffer_s} s; the reference's default is 30 s). A "
                "partner chooses its own buffer, at least 10 s: SCAN-004 moves the clock to "
                "rotatesAt + 1 s, but never later than 10 s before expiresAt, and expects "
                "a new QR by then.")},
        },
    }


def component_schemas(settings: CmsSettings) -> dict[str, Any]:
    """Every named schema of the document."""
    return {
        "Problem": _problem_schema(),
        "TokenRequest": _token_request(),
        "TokenResponse": _token_response(settings),
        "FundingRequest": _funding_request(settings),
        "FundingApplied": _funding_applied(),
        "FundingStatus": _funding_status(),
        "LimitChange": _limit_change(settings),
        "LimitView": _limit_view(),
        "Egm": _egm(),
        "EgmList": {"type": "object", "required": ["egms"], "additionalProperties": False,
                    "properties": {"egms": {"type": "array", "items": {"$ref": REF + "Egm"}}}},
        "QrDisplay": _qr_display(settings),
    }


def header(description: str, schema: dict[str, Any], *, required: bool) -> dict[str, Any]:
    """A response header object."""
    return {"description": description, "required": required, "schema": schema}


def problem(
    status: int, codes: list[str], description: str, *,
    headers: dict[str, Any] | None = None, required: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A problem+json response whose `code` is one of `codes` (and `status` is `status`)."""
    narrowing: dict[str, Any] = {"properties": {"status": {"const": status},
                                                "code": {"enum": codes}}}
    if required:
        narrowing["required"] = list(required)
    response: dict[str, Any] = {
        "description": f"{description} Codes: {', '.join(codes)}.",
        "content": {PROBLEM_JSON: {"schema": {"allOf": [{"$ref": REF + "Problem"},
                                                        narrowing]}}},
    }
    if headers:
        response["headers"] = headers
    return response


def json_response(description: str, schema: str, *,
                  headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON response with the named component schema."""
    response: dict[str, Any] = {"description": description,
                                "content": {JSON: {"schema": {"$ref": REF + schema}}}}
    if headers:
        response["headers"] = headers
    return response
