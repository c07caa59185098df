"""TPAS's CMS steps: limit check, funding with inquiry and retry, void, and recovery of one
payment (the background sweep that schedules recoveries is `sim_trustly.tpas_recovery`).

The rules (exactly-once, when to void, when to give up) are in `sim_trustly.tpas`'s
docstring. Every state change goes through `payments.advance`, a compare-and-set on the
status, so a live request and a sweep that race over one payment cannot both settle it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sim_trustly import demo_bank, payments
from sim_trustly.cms_client import (
    CmsAdapter,
    FundingCall,
    FundingResult,
    adapter_for,
    profile_for,
)
from sim_trustly.context import TrustlyContext
from sim_trustly.partner_profiles import RetryPolicy
from sim_trustly.payments import Event, PaymentRecord, PaymentView
from simkit.clock import wait

log = logging.getLogger(__name__)

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
    (`sim_trustly.tpas_recovery`), which never lets one CMS hold up another.
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
