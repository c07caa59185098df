"""TPAS, the Pay: redeem the QR, approve at the demo bank, check the limit, fund the EGM.

A payment is a state machine stored in `payments` (see `sim_trustly.tpas.payments`):

    CREATED --bank ok--> AUTHORIZED --limit ok--> FUNDING --APPLIED--> CREDITED
       |                     |                       |------REJECTED--> REJECTED_VOIDED (void)
       +--bank refused--> FAILED_VOIDED              +--gave up-------> FAILED_VOIDED (void)
                             +--limit too low--> REJECTED_VOIDED (void)

Rules that keep crediting exactly-once:

- The QR claim and the CREATED payment, with its fresh `transactionId`, commit together
  before anything is sent, so every send, retry and recovery uses one id and the CMS can
  apply it at most once.
- A payment is voided only on a decided answer: the CMS rejected that id, or (giving up) the
  CMS says it never saw it and no request of ours can still be in flight. A timeout, a
  dropped connection, a 5xx or garbage (outcome UNKNOWN) is never taken as a "no": TPAS asks
  `GET fundings/{id}`, resends the same request when the CMS says NOT_FOUND, and after
  `tpas_funding_attempts` tries leaves the payment in FUNDING for the recovery sweep.
- Giving up (FAILED_VOIDED, reason CMS_UNREACHABLE) needs all three: the payment is older
  than `tpas_give_up_after_s`, the last send is older than `tpas_lease_s` (longer than any
  request's timeout, so nothing is still in flight), and the CMS answers NOT_FOUND.
- A payment the bank refused never reached the CMS. With `tpas_release_qr_on_bank_refusal`
  (the default) it hands its QR claim back in the same commit that ends it, so the code the
  EGM still shows can be paid again; the refused payment stays as the record. Only a payment
  that holds the claim can release it, and only once (the compare-and-set out of CREATED), so
  a code still has at most one live or credited payment.
- A limits answer of UNKNOWN does not stop the payment: the Funding API enforces the daily
  limit atomically anyway; the limits call only spares the CMS a request it would refuse.

- Start-up never waits for a CMS: open payments are carried on by the background sweep
  (`sim_trustly.tpas.recovery`), one lane per CMS in a small pool, so a CMS that does not
  answer delays neither serving nor any other CMS's payments.

This module is the whole state machine: the entry points the microsite and the control API
call (`pay_with_qr`, `get_payment`, `describe_scan`), then the CMS steps (limit check, funding
with inquiry and retry, void, and recovery of one payment). Every state change goes through
`payments.advance`, a compare-and-set on the status, so a live request and a sweep that race
over one payment cannot both settle it. The rows and events are stored by
`sim_trustly.tpas.payments`; the background sweep that schedules recoveries is
`sim_trustly.tpas.recovery`.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sim_trustly.cms_client.adapters import (
    CmsAdapter,
    FundingCall,
    FundingResult,
    adapter_for,
    profile_for,
)
from sim_trustly.cms_client.partner_profiles import RetryPolicy
from sim_trustly.context import TrustlyContext
from sim_trustly.microsite import demo_bank
from sim_trustly.tpas import payments, redemption
from sim_trustly.tpas.payments import Event, PaymentRecord, PaymentView
from sim_trustly.tpas.redemption import (
    QrCodeExpired,
    QrCodeInvalid,
    QrCodeUnknown,
    QrCodeUsed,
    QrCodeWrongMerchant,
)
from simkit.clock import format_instant, wait
from simkit.errors import BadRequest, NotFound, SimError
from simkit.money import MinorUnits, parse_currency, parse_minor

__all__ = [
    "PaymentNotFound", "PaymentRequest", "PaymentView", "QrCodeExpired", "QrCodeInvalid",
    "QrCodeUnknown", "QrCodeUsed", "QrCodeWrongMerchant", "ScanView", "describe_scan",
    "fund_authorized", "get_payment", "parse_payment_request", "pay_with_qr", "recover_one",
    "recover_payments",
]

log = logging.getLogger(__name__)

SUGGESTED_AMOUNTS: tuple[MinorUnits, ...] = tuple(map(MinorUnits, (2000, 5000, 10000, 20000)))
MAX_CREDENTIAL_CHARS = 128
_PAYMENT_ID = re.compile(r"[0-9a-f]{32}")
_SCAN_STATES = {"QR_CODE_UNKNOWN": "UNKNOWN", "QR_CODE_WRONG_MERCHANT": "WRONG_MERCHANT",
                "QR_CODE_USED": "USED", "QR_CODE_EXPIRED": "EXPIRED",
                "QR_CODE_INVALID": "EXPIRED"}


class PaymentNotFound(NotFound):
    """Raised when a payment id names no payment."""

    def __init__(self) -> None:
        super().__init__("no such payment", code="PAYMENT_NOT_FOUND")


@dataclass(frozen=True)
class PaymentRequest:
    """A validated payment body: amount, currency and the demo-bank login."""

    amount: MinorUnits
    currency: str
    username: str
    password: str

    def __repr__(self) -> str:  # never print the password
        return f"PaymentRequest(amount={self.amount}, currency={self.currency!r}, ...)"


def _required(body: dict[str, Any], name: str, field: str) -> Any:
    if body.get(name) is None:
        raise BadRequest(f"{field} is required", code="MISSING_FIELD", field=field)
    return body[name]


def _credential(bank: dict[str, Any], name: str) -> str:
    value = _required(bank, name, f"bank.{name}")
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CREDENTIAL_CHARS \
            or not value.isprintable():
        raise BadRequest(f"bank.{name} must be 1-{MAX_CREDENTIAL_CHARS} printable characters",
                         code="INVALID_FIELD", field=f"bank.{name}")
    return value


def parse_payment_request(body: Any) -> PaymentRequest:
    """Validate `{"amount", "currency", "bank": {"username", "password"}}` or raise 400.

    Checked before the QR is claimed, so a typo never uses up the player's QR.
    """
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", code="INVALID_REQUEST")
    amount = parse_minor(_required(body, "amount", "amount"))
    currency = parse_currency(_required(body, "currency", "currency"))
    bank = _required(body, "bank", "bank")
    if not isinstance(bank, dict):
        raise BadRequest("bank must be an object with username and password",
                         code="INVALID_FIELD", field="bank")
    return PaymentRequest(amount, currency, _credential(bank, "username"),
                          _credential(bank, "password"))


def pay_with_qr(ctx: TrustlyContext, code: str, request: PaymentRequest) -> PaymentView:
    """Pay `request.amount` onto the EGM of a scanned QR; the answer is the payment's state.

    Raises QrCodeUnknown (404), QrCodeUsed (409), QrCodeExpired or QrCodeInvalid (410),
    QrCodeWrongMerchant (403), and 422 CURRENCY_NOT_SUPPORTED before anything is claimed.
    Otherwise the payment ends CREDITED, REJECTED_VOIDED or FAILED_VOIDED, or, when the CMS
    could not be reached, stays FUNDING for the sweep.
    """
    now = ctx.clock.now()
    token = redemption.presentable(ctx, code, now)
    _refuse_what_cannot_be_paid(ctx, request)
    row = _create(ctx, token, request, now)
    return _authorize_and_fund(ctx, row, request)


def _refuse_what_cannot_be_paid(ctx: TrustlyContext, request: PaymentRequest) -> None:
    """Refuse, before the QR is claimed, a payment that could only be voided later.

    A currency other than the one this Trustly pays in (`tpas_currency`, the one the scan
    page offers) would be authorized at the bank and refused by the CMS, and the claimed QR
    would be lost to the player: 422 CURRENCY_NOT_SUPPORTED instead, the QR still payable.
    """
    accepted = ctx.settings.tpas_currency
    if request.currency != accepted:
        raise SimError("CURRENCY_NOT_SUPPORTED", 422,
                       f"this QR code pays in {accepted}, not {request.currency}",
                       field="currency", expected=accepted)


def _create(
    ctx: TrustlyContext, token: redemption.PresentedToken, request: PaymentRequest,
    now: datetime,
) -> PaymentRecord:
    """Claim the QR and store the CREATED payment with its transactionId, in one commit."""
    # The bank may legitimately take up to MAX_SLEEP_S; the sweep must not take over sooner.
    lease = ctx.settings.tpas_stale_after_s + demo_bank.MAX_SLEEP_S
    row = PaymentRecord(
        id=uuid.uuid4().hex, qr_code=token.code, merchant_id=token.merchant_id,
        egm_id=token.egm_id, amount=request.amount, currency=request.currency, ubai=None,
        bank_account=None, status=payments.CREATED, transaction_id=uuid.uuid4().hex,
        reason=None, credit_meter=None, attempts=0, created_at=now, updated_at=now,
        next_attempt_at=now + timedelta(seconds=lease),
    )
    events = [Event("CREATED", {"qrCode": token.code, "transactionId": row.transaction_id,
                                "amount": row.amount, "currency": row.currency})]
    if ctx.db.is_sqlite:
        with ctx.db.core_write() as connection:
            redemption.claim(connection, token.code, now)
            payments.create(connection, row, events)
    elif not payments.claim_and_create(ctx.db, token.code, row, events):
        redemption.refuse_claim(ctx.db, token.code, now)
    return row


def _authorize_and_fund(
    ctx: TrustlyContext, row: PaymentRecord, request: PaymentRequest
) -> PaymentView:
    """The demo bank step, then the CMS steps (`fund_authorized`, below)."""
    bank = demo_bank.authorize(request.username, request.password, request.amount, ctx.clock)
    now = ctx.clock.now()
    if not bank.ok:
        assert bank.reason is not None
        done = _refused_at_bank(ctx, row, bank.reason, now)
        return PaymentView.of(done) if done else get_payment(ctx, row.id)
    authorized = payments.advance(
        ctx.db, row.id, payments.CREATED, now,
        [Event("BANK_AUTHORIZED", {"account": bank.account_id, "ubai": bank.ubai})],
        status=payments.AUTHORIZED, ubai=bank.ubai, bank_account=bank.account_id,
        next_attempt_at=now + timedelta(seconds=ctx.settings.tpas_lease_s))
    if authorized is None:  # the sweep took over a bank step it thought had died
        return get_payment(ctx, row.id)
    return fund_authorized(ctx, authorized)


def _refused_at_bank(
    ctx: TrustlyContext, row: PaymentRecord, reason: str, now: datetime,
) -> PaymentRecord | None:
    """End a payment the bank refused; hand its QR claim back if the deployment says so.

    Nothing was sent to the CMS (the bank step comes first), so no credit can follow. The
    release commits with the move out of CREATED: if the sweep moved the payment first,
    neither happens. None when another actor moved the payment first.
    """
    changes: dict[str, Any] = {"status": payments.FAILED_VOIDED, "reason": reason,
                               "next_attempt_at": None}
    if not ctx.settings.tpas_release_qr_on_bank_refusal:
        return payments.advance(ctx.db, row.id, payments.CREATED, now,
                                [Event("BANK_REFUSED", {"reason": reason})], **changes)
    refused = Event("BANK_REFUSED", {"reason": reason, "qrReleased": True})
    with ctx.db.core_write() as connection:
        done = payments.advance_within(connection, row.id, payments.CREATED, now, [refused],
                                       claim_released_at=now, **changes)
        if done is not None:
            redemption.release(connection, row.qr_code)
    return done


def get_payment(ctx: TrustlyContext, payment_id: str) -> PaymentView:
    """The payment as it stands now, or 404 PAYMENT_NOT_FOUND."""
    row = payments.get(ctx.db, payment_id) if _PAYMENT_ID.fullmatch(payment_id) else None
    if row is None:
        raise PaymentNotFound()
    return PaymentView.of(row)


@dataclass(frozen=True)
class ScanView:
    """What the microsite shows for a scanned code before (or after) paying."""

    code: str
    state: str  # ACTIVE | EXPIRED | USED | UNKNOWN | WRONG_MERCHANT
    egm_id: str | None
    merchant_id: str | None
    merchant_name: str | None
    expires_at: datetime | None
    payment: PaymentView | None
    currency: str
    suggested_amounts: tuple[MinorUnits, ...] = SUGGESTED_AMOUNTS

    def to_json(self) -> dict[str, Any]:
        """The JSON twin of the scan page."""
        return {
            "code": self.code, "state": self.state, "egmId": self.egm_id,
            "merchantId": self.merchant_id, "casino": self.merchant_name,
            "expiresAt": format_instant(self.expires_at) if self.expires_at else None,
            "payment": self.payment.to_json() if self.payment else None,
            "currency": self.currency, "suggestedAmounts": list(self.suggested_amounts),
        }


def _scan_state(ctx: TrustlyContext, token: redemption.PresentedToken | None,
                now: datetime) -> str:
    try:
        redemption.verify(ctx, redemption.refuse_if_unpayable(token, now), now)
    except (QrCodeUnknown, QrCodeWrongMerchant, QrCodeUsed, QrCodeExpired,
            QrCodeInvalid) as refusal:
        return _SCAN_STATES[refusal.code]
    return "ACTIVE"


def describe_scan(ctx: TrustlyContext, code: str) -> ScanView:
    """Everything the scan page needs about a code; never raises for a bad code.

    A code whose JWT no longer verifies shows as EXPIRED: the player's remedy is the same.
    One query reads the token, its merchant, its key and its payment.
    """
    now = ctx.clock.now()
    token = redemption.find(ctx.db, code, now)
    state = _scan_state(ctx, token, now)
    if token is None:
        return ScanView(code, state, None, None, None, None, None, ctx.settings.tpas_currency)
    paid = token.payment if token.used_at else None
    return ScanView(code, state, token.egm_id, token.merchant_id, token.merchant_name,
                    token.expires_at, PaymentView.of(paid) if paid else None,
                    paid.currency if paid else ctx.settings.tpas_currency)


# The CMS steps: limit check, funding with inquiry and retry, void, and recovery of one
# payment. The rules they keep are in this module's docstring.
# Answers that name no decision about our transactionId: ask again rather than void.
_UNDECIDED_CODES = frozenset({"IDEMPOTENCY_KEY_REUSED", "FUNDING_IN_PROGRESS"})


def _decided(result: FundingResult | None) -> bool:
    if result is None:
        return False
    if result.outcome == "REJECTED":
        return result.code not in _UNDECIDED_CODES
    return result.outcome == "APPLIED"


def _detail(result: FundingResult) -> dict[str, Any]:
    return {"outcome": result.outcome, "httpStatus": result.http_status, "code": result.code,
            "creditMeter": result.credit_meter, "detail": result.detail}


def _call(row: PaymentRecord) -> FundingCall:
    assert row.ubai is not None
    return FundingCall(transaction_id=row.transaction_id, egm_id=row.egm_id, amount=row.amount,
                       currency=row.currency, ubai=row.ubai, qr_token_id=row.qr_code)


def _now_plus(ctx: TrustlyContext, seconds: float) -> tuple[datetime, datetime]:
    now = ctx.clock.now()
    return now, now + timedelta(seconds=seconds)


def _view(ctx: TrustlyContext, row: PaymentRecord | None, payment_id: str) -> PaymentView:
    """The view of a row just written, or of the stored payment when another actor won."""
    if row is None:
        row = payments.get(ctx.db, payment_id)
        assert row is not None
    return PaymentView.of(row)


def _finish(
    ctx: TrustlyContext, row: PaymentRecord, expected: str, status: str, *, reason: str,
    events: list[Event],
) -> PaymentView:
    """End a payment that credited nothing, voiding its bank payment if there is one."""
    if row.bank_account is not None:
        events = [*events, Event("BANK_VOIDED", demo_bank.void(row.bank_account, row.id))]
    done = payments.advance(ctx.db, row.id, expected, ctx.clock.now(), events,
                            status=status, reason=reason, next_attempt_at=None)
    return _view(ctx, done, row.id)


def _settle(ctx: TrustlyContext, row: PaymentRecord, result: FundingResult) -> PaymentView:
    """Record the CMS's decision about our transactionId: credited, or rejected and voided."""
    if result.outcome == "APPLIED":
        done = payments.advance(
            ctx.db, row.id, payments.FUNDING, ctx.clock.now(),
            [Event("CREDITED", _detail(result))], status=payments.CREDITED,
            credit_meter=result.credit_meter, reason=None, next_attempt_at=None)
        return _view(ctx, done, row.id)
    return _finish(ctx, row, payments.FUNDING, payments.REJECTED_VOIDED,
                   reason=result.code or "CMS_REJECTED",
                   events=[Event("REJECTED", _detail(result))])


def fund_authorized(
    ctx: TrustlyContext, row: PaymentRecord, adapter: CmsAdapter | None = None
) -> PaymentView:
    """Check the UBAI's daily limit, then send the funding and drive it to an outcome."""
    adapter = adapter or adapter_for(ctx, row.merchant_id)
    assert row.ubai is not None
    limit = adapter.get_limit(row.ubai)
    checked = Event("LIMIT_CHECKED", {"outcome": limit.outcome, "remaining": limit.remaining,
                                      "dailyLimit": limit.daily_limit, "detail": limit.detail})
    if limit.outcome == "OK" and limit.remaining is not None and limit.remaining < row.amount:
        return _finish(ctx, row, payments.AUTHORIZED, payments.REJECTED_VOIDED,
                       reason="DAILY_LIMIT_EXCEEDED", events=[checked])
    now, lease = _now_plus(ctx, ctx.settings.tpas_lease_s)
    started = payments.advance(
        ctx.db, row.id, payments.AUTHORIZED, now, [checked, Event("FUNDING_SENT", {"attempt": 1})],
        status=payments.FUNDING, count_attempt=True, next_attempt_at=lease)
    if started is None:
        return _view(ctx, None, row.id)
    return _drive(ctx, adapter, started, _send(ctx, adapter, started, already_leased=True))


def _send(
    ctx: TrustlyContext, adapter: CmsAdapter, row: PaymentRecord, *, already_leased: bool = False,
) -> FundingResult | None:
    """Send the funding request; None when the payment is no longer ours to send."""
    if not already_leased:
        now, lease = _now_plus(ctx, ctx.settings.tpas_lease_s)
        sending = payments.advance(
            ctx.db, row.id, payments.FUNDING, now, [Event("FUNDING_SENT", {"resend": True})],
            count_attempt=True, next_attempt_at=lease)
        if sending is None:
            return None
    result = adapter.post_funding(_call(row))
    if result.outcome == "NOT_FOUND":  # not a valid answer to a POST: treat as unknown
        return FundingResult(outcome="UNKNOWN", http_status=result.http_status,
                             code=result.code, detail=result.detail)
    return result


def _inquire(ctx: TrustlyContext, adapter: CmsAdapter, row: PaymentRecord) -> FundingResult:
    """Ask the CMS what became of our transactionId, and note the answer."""
    result = adapter.get_funding(row.transaction_id)
    payments.log_events(ctx.db, row.id, ctx.clock.now(), [Event("INQUIRY", _detail(result))])
    return result


def _next_try(ctx: TrustlyContext, adapter: CmsAdapter, row: PaymentRecord) -> FundingResult | None:
    """Inquire; resend only when the CMS says it never decided this transactionId."""
    found = _inquire(ctx, adapter, row)
    if found.outcome != "NOT_FOUND":
        return found
    return _send(ctx, adapter, row)


def _retries(ctx: TrustlyContext, row: PaymentRecord) -> RetryPolicy:
    """The merchant's CMS profile says how often and how patiently to retry."""
    return profile_for(ctx.settings, row.merchant_id).retries


def _note_unknown(ctx: TrustlyContext, row: PaymentRecord, result: FundingResult) -> None:
    payments.log_events(ctx.db, row.id, ctx.clock.now(),
                        [Event("FUNDING_UNKNOWN", _detail(result))])


def _drive(
    ctx: TrustlyContext, adapter: CmsAdapter, row: PaymentRecord, last: FundingResult | None,
) -> PaymentView:
    """Turn `last` (the answer to a send just made, or None) into a definite outcome if the
    CMS gives one within the profile's attempts; otherwise park the payment for the sweep.
    Past the give-up age nothing is sent any more: TPAS only asks (`_park_or_give_up`)."""
    if _past_give_up_age(ctx, row, ctx.clock.now()):
        return _park_or_give_up(ctx, adapter, row)
    retries = _retries(ctx, row)
    for attempt in range(1, retries.max_attempts + 1):
        if last is not None:
            if _decided(last):
                return _settle(ctx, row, last)
            _note_unknown(ctx, row, last)
            wait(ctx.clock, retries.delay_s(attempt))
        last = _next_try(ctx, adapter, row)
        if last is None:
            return _view(ctx, None, row.id)
    if _decided(last):
        assert last is not None
        return _settle(ctx, row, last)
    wait(ctx.clock, retries.delay_s(retries.max_attempts + 1))
    return _park_or_give_up(ctx, adapter, row)


def _past_give_up_age(ctx: TrustlyContext, row: PaymentRecord, now: datetime) -> bool:
    return now - row.created_at >= timedelta(seconds=ctx.settings.tpas_give_up_after_s)


def _may_give_up(ctx: TrustlyContext, row: PaymentRecord, now: datetime) -> bool:
    """Old enough, and no request of ours can still be on its way to the CMS."""
    s = ctx.settings
    if not _past_give_up_age(ctx, row, now):
        return False
    profile = profile_for(s, row.merchant_id)
    in_flight_s = max(s.tpas_lease_s, profile.connect_timeout_s + profile.read_timeout_s)
    last = payments.last_send_at(ctx.db, row.id)
    return last is None or now - last >= timedelta(seconds=in_flight_s)


def _park_or_give_up(ctx: TrustlyContext, adapter: CmsAdapter, row: PaymentRecord) -> PaymentView:
    """A last inquiry; then settle, give up (see the rule in `tpas`), or wait for the sweep."""
    final = _inquire(ctx, adapter, row)
    if _decided(final):
        return _settle(ctx, row, final)
    now = ctx.clock.now()
    if final.outcome == "NOT_FOUND" and _may_give_up(ctx, row, now):
        return _finish(ctx, row, payments.FUNDING, payments.FAILED_VOIDED,
                       reason="CMS_UNREACHABLE", events=[Event("GAVE_UP", _detail(final))])
    retry_at = now + timedelta(seconds=_retries(ctx, row).backoff_cap_s)
    parked = payments.advance(ctx.db, row.id, payments.FUNDING, now,
                              [Event("PARKED", {"retryAt": retry_at, **_detail(final)})],
                              next_attempt_at=retry_at)
    return _view(ctx, parked, row.id)


def recover_one(ctx: TrustlyContext, payment_id: str, *, steal: bool = False
                ) -> PaymentView | None:
    """Take one open payment over and carry it on from the state it was left in.

    None when the payment is not ours to take: finished, or leased by someone else and not
    `steal`. Taking the lease is a compare-and-set, so of a sweep, a live request's retries
    and other workers' sweeps only one carries a payment at a time.
    """
    now, lease = _now_plus(ctx, ctx.settings.tpas_lease_s)
    row = payments.take_lease(ctx.db, payment_id, now, lease, steal=steal)
    if row is None:
        return None
    if row.status == payments.CREATED:  # the bank step never finished: nothing was sent
        return _finish(ctx, row, payments.CREATED, payments.FAILED_VOIDED,
                       reason="BANK_INCOMPLETE", events=[Event("RECOVERED", {"from": "CREATED"})])
    adapter = adapter_for(ctx, row.merchant_id)
    if row.status == payments.AUTHORIZED:
        return fund_authorized(ctx, row, adapter)
    return _drive(ctx, adapter, row, None)


def recover_payments(ctx: TrustlyContext, *, include_leased: bool = False) -> int:
    """One synchronous recovery pass: carry every open payment whose lease ran out on.

    Returns how many payments reached a definite state in this pass. `include_leased` also
    takes payments someone else holds, which is right only when no one else can be alive;
    it is safe for money either way (same transactionId, compare-and-set). An error on one
    payment is logged and the pass goes on with the others. The control API's
    `POST /_sim/payments/recover` runs this; servers run the background sweep instead
    (`sim_trustly.tpas.recovery`), which never lets one CMS hold up another.
    """
    finished = 0
    due = payments.due_for_recovery(ctx.db, ctx.clock.now(), include_leased=include_leased)
    for payment_id in due:
        try:
            view = recover_one(ctx, payment_id, steal=include_leased)
        except Exception:  # one broken partner profile must not stall every other payment
            log.exception("recovery of payment %s failed", payment_id)
            continue
        finished += int(view is not None and view.definite)
    return finished
