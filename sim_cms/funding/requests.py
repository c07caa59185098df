"""Funding requests and outcomes: parsing, the idempotency fingerprint, response bodies.

Where the line runs between a malformed request and a decided rejection:

- **400, not stored, not audited** (nothing was decided, the transactionId stays free): the
  body is not a JSON object (`INVALID_REQUEST`); a field is missing, has the wrong JSON type
  or the wrong form (`VALIDATION_ERROR`, with `field` naming it). `amount` must be a JSON
  integer (a float such as `20.0` or `1e3`, a string or a boolean is malformed) with
  `|amount| <= 10**12`; `currency` must be three upper-case letters; `egmId` has the shape
  Trustly accepts (1-64 letters, digits and `._:-`, starting with a letter or digit),
  `ubai` the Daily Limits API's (1-128 of the same characters), `transactionId` 1-128
  URL-safe characters (letters, digits, `._:~-`, so it fits the status-inquiry path), and
  `qrTokenId` 1-128 visible ASCII characters (whatever id the CMS recorded from Trustly's
  url). Members other than the six of `FIELDS` are ignored.
- **Decided and stored under the transactionId**: everything about a well-formed request
  that depends on the casino's state, including a well-formed amount that cannot be paid:
  zero or negative, or a currency that is not the EGM's (422 `INVALID_AMOUNT`). A retry with
  the same body replays the stored answer.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Protocol

from sim_cms.audit import canonical_json
from sim_cms.errors import problem_body
from sim_cms.limits import UBAI_PATTERN
from sim_cms.models import FundingRecord
from simkit.clock import format_instant
from simkit.errors import BadRequest, SimError
from simkit.money import MAX_MINOR, MinorUnits

FIELDS = ("transactionId", "egmId", "amount", "currency", "ubai", "qrTokenId")
_SHAPES: dict[str, tuple[re.Pattern[str], str]] = {
    "transactionId": (re.compile(r"[A-Za-z0-9._:~-]{1,128}"),
                      "1-128 letters, digits or ._:~- characters"),
    "egmId": (re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}"),
              "1-64 letters, digits or ._:- characters, starting with a letter or digit"),
    "ubai": (UBAI_PATTERN, "1-128 letters, digits or ._:- characters"),
    "qrTokenId": (re.compile(r"[!-~]{1,128}"), "1-128 visible ASCII characters"),
}
_CURRENCY = re.compile(r"[A-Z]{3}")
PROBLEM_JSON = "application/problem+json"
JSON = "application/json"


@dataclass(frozen=True)
class FundingRequest:
    """A well-formed `POST /cws/v1/fundings` body (not yet checked against the casino)."""

    transaction_id: str
    egm_id: str
    amount: MinorUnits
    currency: str
    ubai: str
    qr_token_id: str

    def wire(self) -> dict[str, Any]:
        """The request's fields under their wire names."""
        return {"transactionId": self.transaction_id, "egmId": self.egm_id,
                "amount": self.amount, "currency": self.currency, "ubai": self.ubai,
                "qrTokenId": self.qr_token_id}

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON of all six fields: equal iff the bodies mean the same.

        Member order, spacing and ignored extra members do not change it; any field's value
        does, so a retry that changes anything is recognised as reuse of the key. Computed
        once per request (the funding path needs it up to three times).
        """
        return self._fingerprint

    @cached_property
    def _fingerprint(self) -> str:
        return hashlib.sha256(canonical_json(self.wire()).encode("ascii")).hexdigest()


def _invalid(field: str, message: str) -> BadRequest:
    return BadRequest(message, code="VALIDATION_ERROR", field=field)


def _identifier(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if value is None:
        raise _invalid(field, f"{field} is required")
    pattern, shape = _SHAPES[field]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _invalid(field, f"{field} must be a string of {shape}")
    return value


def validate_transaction_id(value: str) -> str:
    """Return a transactionId taken from a URL if it has the wire shape, else raise 400.

    Refusing it up front keeps odd bytes (a NUL, say) away from the database.
    """
    return _identifier({"transactionId": value}, "transactionId")


def _amount(body: dict[str, Any]) -> MinorUnits:
    value = body.get("amount")
    if value is None:
        raise _invalid("amount", "amount is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid("amount", "amount must be a JSON integer number of minor units")
    if abs(value) > MAX_MINOR:
        raise _invalid("amount", f"amount must be at most {MAX_MINOR} minor units")
    return MinorUnits(value)


def _currency(body: dict[str, Any]) -> str:
    value = body.get("currency")
    if value is None:
        raise _invalid("currency", "currency is required")
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise _invalid("currency", "currency must be a three-letter ISO 4217 code")
    return value


def parse_funding_request(body: Any) -> FundingRequest:
    """Validate the shape of a funding body, or raise a 400 naming the first bad field."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", code="INVALID_REQUEST")
    transaction_id = _identifier(body, "transactionId")
    egm_id = _identifier(body, "egmId")
    amount, currency = _amount(body), _currency(body)
    return FundingRequest(transaction_id, egm_id, amount, currency,
                          _identifier(body, "ubai"), _identifier(body, "qrTokenId"))


def applied_body(request: FundingRequest, credit_meter: int, applied_at: datetime) -> str:
    """The exact text of a 201 answer, stored so that every replay is byte-identical."""
    return json.dumps({
        "transactionId": request.transaction_id, "status": "APPLIED", "egmId": request.egm_id,
        "amount": request.amount, "currency": request.currency, "creditMeter": credit_meter,
        "appliedAt": format_instant(applied_at),
    })


def rejection_body(error: SimError) -> str:
    """The exact text of a rejection, the same problem document a live error renders."""
    return json.dumps(problem_body(error))


class StoredOutcome(Protocol):
    """What a replay reads of a stored outcome: a `FundingRecord` or a Core row alike."""

    @property
    def fingerprint(self) -> str: ...
    @property
    def http_status(self) -> int: ...
    @property
    def response_body(self) -> str: ...
    @property
    def error_code(self) -> str | None: ...


@dataclass(frozen=True)
class FundingOutcome:
    """What the Funding API answers: status, exact body text, and whether it is a replay."""

    http_status: int
    body: str
    code: str | None = None
    replayed: bool = False

    @property
    def media_type(self) -> str:
        """problem+json for any error, plain JSON for the 201."""
        return PROBLEM_JSON if self.http_status >= 400 else JSON

    @classmethod
    def from_record(cls, record: StoredOutcome, *, replayed: bool) -> FundingOutcome:
        """The stored answer of a decided funding."""
        return cls(record.http_status, record.response_body, record.error_code, replayed)


def status_document(record: FundingRecord) -> dict[str, Any]:
    """The answer to a status inquiry: applied or rejected, and the original answer.

    `response` is the body the original request got (the 201 document or the problem
    document), parsed; `httpStatus` the status it got; `code` is present on rejections.
    """
    document: dict[str, Any] = {
        "transactionId": record.transaction_id, "status": record.outcome,
        "httpStatus": record.http_status, "egmId": record.egm_id, "amount": record.amount,
        "currency": record.currency, "decidedAt": format_instant(record.created_at),
    }
    if record.error_code is not None:
        document["code"] = record.error_code
    document["response"] = json.loads(record.response_body)
    return document
