"""One funding per QR token: a consumed or long-expired token is refused, a used QR replaced.

Trustly claims each QR token once, but the CMS must not rely on that alone: its Funding API
is where money moves, so it refuses a second transactionId naming a token that already paid,
and a token past its expiry (plus the documented leeway), and it takes a used QR off the
EGM's screen at once so the next player never scans a spent code.
"""

from __future__ import annotations

from harness.certify.scenarios.context import Context, expires_in_s, problem_code
from harness.certify.scenarios.model import scenario
from harness.certify.scenarios.scan import LEEWAY_S, NO_QR, wait_for_new_qr
from harness.clients.http import Response

QR_DUTY = ("Trustly Scan and Pay CMS duty: QR display and the Funding API; "
           "docs/architecture.md §15 (Funding API: one funding per qrTokenId: a second "
           "transactionId on a consumed QR token, or a QR token past its expiry plus the "
           "documented leeway, is refused; a QR named by a funding is replaced on the EGM at "
           "once)")
LONG_AFTER_S = 3600  # "long after it expired": an hour past expiry and leeway


def _refused(ctx: Context, description: str, answer: Response) -> None:
    """Record that `answer` is a refusal (any 4xx: the codes are the CMS's to name)."""
    ctx.expect(description, "4xx", f"{answer.status_code} {problem_code(answer) or ''}".strip(),
               ok=400 <= answer.status_code < 500)


@scenario(
    "QR-001", "A second transactionId on a QR token that already paid is refused",
    requirement=f"{QR_DUTY}. One QR token pays for one funding: the CMS refuses the second "
                "whatever Trustly did (the error code is the CMS's to name).",
    tags=("funding", "qr", "replay"),
    steps=("As TPAS, fund the EGM naming a QR it shows: 201.",
           "Fund it again under a new transactionId naming the same qrTokenId: refused (4xx).",
           "The meter went up once."))
def qr_001(ctx: Context) -> None:
    egm_id, amount = ctx.egm(), 800
    before = ctx.meters([egm_id])
    shown = ctx.qr(egm_id)
    first = ctx.cms.post_funding(ctx.funding(egm_id, amount, ubai=ctx.unique("ubai"),
                                             qr=shown))
    second = ctx.cms.post_funding(ctx.funding(egm_id, amount, ubai=ctx.unique("ubai"),
                                              qr=shown))
    ctx.expect_rise("one QR token paid once: the meter went up by one amount", before, amount)
    ctx.expect("the first funding on the QR is applied (201)", 201, first.status_code)
    _refused(ctx, "a second transactionId on the consumed QR is refused", second)


@scenario(
    "QR-002", "A QR token used long after it expired is refused",
    requirement=f"{QR_DUTY}. The CMS checks the token's expiry itself, on its own clock.",
    tags=("funding", "qr", "expiry"), needs=("clock",),
    steps=("Make the EGM show a fresh QR; note its expiresAt.",
           f"Move both clocks past it, plus Trustly's {LEEWAY_S} s leeway, plus an hour.",
           "As TPAS, fund the EGM naming that QR: refused (4xx); the meter did not move."))
def qr_002(ctx: Context) -> None:
    egm_id, amount = ctx.egm(), 700
    before = ctx.meters([egm_id])
    shown = ctx.qr(egm_id)
    expires_at = shown.expires_at or str(ctx.scan(shown.url)["expiresAt"])
    ctx.advance(expires_in_s(expires_at, ctx.target.now()) + LEEWAY_S + LONG_AFTER_S)
    late = ctx.cms.post_funding(ctx.funding(egm_id, amount, ubai=ctx.unique("ubai"), qr=shown))
    ctx.expect_rise("an expired QR token moved no money", before, amount, 0)
    _refused(ctx, "a funding naming a QR an hour past its expiry is refused", late)


@scenario(
    "QR-003", "The QR a player paid with leaves the EGM's screen at once",
    requirement=f"{QR_DUTY}. The next player must never be shown a spent code.",
    tags=("scan", "qr", "pay"),
    steps=("Make the EGM show a fresh QR; a player pays with it: CREDITED.",
           "Read the EGM's QR image (within a few seconds, no clock moved): it shows another "
           "code, which a phone finds ACTIVE."))
def qr_003(ctx: Context) -> None:
    ctx.need(ctx.target.egm_paths.qr_png is not None, "the target names no QR image path")
    egm_id, amount = ctx.egm(), 600
    before = ctx.meters([egm_id])
    shown = ctx.qr(egm_id)
    payment = ctx.pay(shown.url, amount, username=ctx.player())
    ctx.expect_rise("the meter went up by the amount paid", before, amount)
    ctx.require("the payment is CREDITED", "CREDITED", payment.get("status"))
    now_shown = wait_for_new_qr(ctx, egm_id, shown.url)
    ctx.expect("the EGM shows a new QR in place of the spent one", "a different url",
               now_shown, ok=now_shown not in (shown.url, NO_QR))
    if now_shown not in (shown.url, NO_QR):
        ctx.expect("the new code is ACTIVE", "ACTIVE", ctx.scan(now_shown).get("state"))


SCENARIOS = (qr_001, qr_002, qr_003)
