"""What TPAS asks of a merchant's CMS, whatever its API looks like: the CmsAdapter protocol.

Kept apart from `adapters` so that adapters (the reference one, and partners' own) can
import these types without importing the machinery that builds and caches adapters.

Outcomes:

- APPLIED: the CMS says the credit is on the meter (`credit_meter` when it tells).
- REJECTED: the CMS decided not to apply it and never will under this transactionId
  (`code` says why); TPAS voids the bank payment.
- NOT_FOUND: (status inquiry only) the CMS never decided this transactionId, so sending the
  same funding again is safe.
- UNKNOWN: no definite answer (timeout, dropped connection, 5xx without a decided code,
  a body that cannot be read). The credit may or may not have been applied: the caller must
  ask `get_funding` before it sends the same transactionId again, and must never send a
  new transactionId for the same payment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from simkit.money import MinorUnits

FundingOutcome = Literal["APPLIED", "REJECTED", "NOT_FOUND", "UNKNOWN"]
LimitOutcome = Literal["OK", "UNKNOWN"]


@dataclass(frozen=True)
class FundingCall:
    """One funding TPAS wants applied; `transaction_id` is the idempotency key.

    `amount` is typed `MinorUnits` (minor units of `currency`), as everywhere in TPAS. The
    amounts an adapter reads from its CMS's answers (`FundingResult.credit_meter`,
    `LimitResult.remaining`) stay plain ints, so a partner's adapter needs no type of ours.
    """

    transaction_id: str
    egm_id: str
    amount: MinorUnits
    currency: str
    ubai: str
    qr_token_id: str

    def wire(self) -> dict[str, Any]:
        """The reference API's request body (camelCase names)."""
        return {"transactionId": self.transaction_id, "egmId": self.egm_id,
                "amount": self.amount, "currency": self.currency, "ubai": self.ubai,
                "qrTokenId": self.qr_token_id}


@dataclass(frozen=True)
class FundingResult:
    """What became of a funding, as far as the CMS's answer tells (see the module docstring).

    `http_status` is the status of the CMS's decision when known (for a status inquiry, the
    status the original request was answered with), else of the answer received, else None.
    """

    outcome: FundingOutcome
    http_status: int | None = None
    code: str | None = None
    credit_meter: int | None = None
    detail: str = ""

    @property
    def definite(self) -> bool:
        """True when the CMS has decided (APPLIED or REJECTED): nothing more to ask."""
        return self.outcome in ("APPLIED", "REJECTED")


@dataclass(frozen=True)
class LimitResult:
    """What remains of a UBAI's daily limit today, or UNKNOWN when the CMS did not say."""

    outcome: LimitOutcome
    remaining: int | None = None
    daily_limit: int | None = None
    detail: str = ""


class CmsAdapter(Protocol):
    """How TPAS talks to one CMS. Implementations must not raise for network trouble or odd
    answers: they report UNKNOWN instead, so TPAS can decide what to do next."""

    def get_limit(self, ubai: str) -> LimitResult:
        """How much the owner of `ubai` may still be credited today."""
        ...

    def post_funding(self, call: FundingCall) -> FundingResult:
        """Ask the CMS to apply `call` (idempotent per `call.transaction_id`)."""
        ...

    def get_funding(self, transaction_id: str) -> FundingResult:
        """Ask what the CMS decided for `transaction_id` (APPLIED, REJECTED or NOT_FOUND)."""
        ...
