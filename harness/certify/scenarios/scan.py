"""Scan: QR tokens from Trustly, the QR an EGM shows, its rotation and expiry."""

from __future__ import annotations

import json
import secrets
from typing import Any

from harness.certify.scenarios.context import POLL_S, Context, expires_in_s, trustly_error
from harness.certify.scenarios.model import scenario
from harness.clients.cms import decode_qr_png
from harness.clients.trustly import QR_TOKEN_PATH
from simkit.clock import parse_instant
from simkit.wait import poll_until

LEEWAY_S = 30  # Trustly's verification leeway: docs/architecture.md §10 (QR Code API)
ROTATION_MARGIN_S = 10  # a rotation must happen at least this long before expiry
ROTATION_WAIT_S = 5.0  # how long a partner's own rotator may take once due
NO_QR = "no QR on screen"


@scenario(
    "SCAN-001", "The CMS gets a QR token from Trustly for the EGM and shows its url",
    requirement="Trustly Scan and Pay CMS duty: QR display (QR Code API with Basic auth, "
                "merchantId, egmId); docs/architecture.md §2 (The flow: Scan then Pay), "
                "docs/architecture.md §10 (QR Code API)",
    tags=("scan", "token"),
    steps=("Note Trustly's journal position.",
           "Make the EGM show a fresh QR (ask the CMS, or read its QR image).",
           "Trustly's journal shows the CMS's POST to the QR Code API with Basic auth of the "
           "merchant's accessId, naming the EGM, answered 200.",
           "Open the url as a phone: the code is ACTIVE, for this EGM and merchant."))
def scan_001(ctx: Context) -> None:
    egm_id = ctx.egm()
    mark = ctx.trustly_journal_mark()
    shown = ctx.qr(egm_id)
    calls = ctx.trustly_journal_since(mark, QR_TOKEN_PATH)
    mine = [c for c in calls if f'"{egm_id}"' in str(c.get("requestBody"))]
    ctx.expect("the CMS asked Trustly's QR Code API for this EGM", ">= 1 call",
               f"{len(mine)} call(s)", ok=bool(mine))
    if mine:
        call = mine[-1]
        auth = {k.lower(): v for k, v in (call.get("requestHeaders") or {}).items()}
        expected = f"Basic {ctx.target.merchant.access_id}:***"
        ctx.expect("with Basic auth of the merchant's accessId", expected,
                   auth.get("authorization"))
        body = json.loads(call.get("requestBody") or "{}")
        ctx.expect("naming the merchant", ctx.target.merchant.merchant_id,
                   body.get("merchantId"))
        ctx.expect("answered 200", 200, call.get("status"))
    ctx.expect("the url is Trustly's scan url", True,
               shown.url.startswith(f"{ctx.target.trustly.base_url}/scan/"))
    view = ctx.scan(shown.url)
    ctx.expect("a phone finds the code ACTIVE", "ACTIVE", view.get("state"))
    ctx.expect("for this EGM", egm_id, view.get("egmId"))
    ctx.expect("and this merchant", ctx.target.merchant.merchant_id, view.get("merchantId"))


@scenario(
    "SCAN-002", "Trustly's QR Code API issues tokens and refuses bad requests in its dialect",
    requirement="Trustly QR Code API: url/token/expiresAt; 401 (code 300) with "
                "WWW-Authenticate, 400 (code 200), 403 for another merchant; "
                "docs/architecture.md §7 (Errors), docs/architecture.md §10 (QR Code API)",
    tags=("scan", "token", "auth", "bad-input"),
    steps=("POST the token endpoint with the merchant's credentials: 200 with url, token, "
           "expiresAt.",
           "With an unknown accessId: 401, code 300, WWW-Authenticate.",
           "Without egmId: 400, code 200.",
           "With a merchantId that is not the credential's: 403."))
def scan_002(ctx: Context) -> None:
    merchant = ctx.target.merchant
    good = (merchant.access_id, merchant.access_key)
    body = {"merchantId": merchant.merchant_id, "egmId": ctx.egm()}
    ok = ctx.trustly.request_qr_token(body, auth=good)
    issued = ok.json() if ok.status_code == 200 else {}
    ctx.expect("valid credentials get a token", 200, ok.status_code)
    ctx.expect("with url, token and expiresAt", {"url", "token", "expiresAt"},
               set(issued) & {"url", "token", "expiresAt"})
    stranger = (f"unknown-{secrets.token_hex(6)}", "not-the-key")
    bad = ctx.trustly.request_qr_token(body, auth=stranger)
    ctx.expect("unknown credentials: 401", 401, bad.status_code)
    ctx.expect("with numeric code 300", 300, trustly_error(bad).get("code"))
    ctx.expect("and a WWW-Authenticate challenge", True, "www-authenticate" in bad.headers)
    missing = ctx.trustly.request_qr_token({"merchantId": merchant.merchant_id},
                                           auth=good)
    ctx.expect("a missing egmId: 400", 400, missing.status_code)
    ctx.expect("with numeric code 200", 200, trustly_error(missing).get("code"))
    foreign = ctx.trustly.request_qr_token(
        {**body, "merchantId": f"{merchant.merchant_id}-other"}, auth=good)
    ctx.expect("another merchant's id: 403", 403, foreign.status_code)


@scenario(
    "SCAN-003", "The EGM's QR image decodes to exactly the url Trustly issued",
    requirement="Trustly Scan and Pay CMS duty: render the token's url as the QR; "
                "docs/architecture.md §18 (EGMs, QR display and rotation), "
                "docs/architecture.md §21 (Catalogue coverage: QR decode equals url)",
    tags=("scan", "qr"),
    steps=("Make the EGM show a fresh QR.", "Fetch the EGM's QR image (PNG) and decode it.",
           "The decoded text is the url the CMS got from Trustly, and Trustly knows its code "
           "for this EGM."))
def scan_003(ctx: Context) -> None:
    ctx.need(ctx.target.egm_paths.qr_png is not None, "the target names no QR image path")
    egm_id = ctx.egm()
    shown = ctx.qr(egm_id)
    image = ctx.cms.qr_png(egm_id)
    ctx.require("the QR image is served", 200, image.status_code)
    ctx.expect("as image/png", "image/png", image.headers.get("content-type", "").split(";")[0])
    decoded = decode_qr_png(image.content)
    ctx.expect("the image holds one QR code", 1, len(decoded))
    ctx.expect("which decodes to the url Trustly issued", shown.url,
               decoded[0] if decoded else None)
    if decoded:
        view = ctx.scan(decoded[0])
        ctx.expect("a phone opening it finds an ACTIVE code of this EGM",
                   ("ACTIVE", egm_id), (view.get("state"), view.get("egmId")))


def screen_url(ctx: Context, egm_id: str) -> str:
    """The url the EGM's QR image decodes to, or NO_QR when the screen shows no code."""
    image = ctx.cms.qr_png(egm_id)
    texts = decode_qr_png(image.content) if image.status_code == 200 else []
    return texts[0] if len(texts) == 1 else NO_QR


def wait_for_new_qr(ctx: Context, egm_id: str, old_url: str) -> str:
    """The url the EGM shows once it shows a code other than `old_url` (deadline-bound);
    else what it shows at the deadline: `old_url`, or NO_QR."""
    shown = [old_url]

    def new_qr() -> str | None:
        shown.append(screen_url(ctx, egm_id))
        return shown[-1] if shown[-1] not in (old_url, NO_QR) else None

    return poll_until(new_qr, timeout_s=ROTATION_WAIT_S, interval_s=POLL_S) or shown[-1]


def _to_rotation(ctx: Context, egm_id: str) -> tuple[Any, str]:
    """Show a fresh QR, move both clocks to its rotation (before expiry), return it and the
    url the EGM shows afterwards."""
    shown = ctx.qr(egm_id)
    expires = parse_instant(ctx.scan(shown.url)["expiresAt"])
    due = expires.timestamp() - ROTATION_MARGIN_S
    if shown.rotates_at:
        due = min(due, parse_instant(shown.rotates_at).timestamp() + 1)
    ctx.advance(due - ctx.target.now().timestamp())
    if ctx.target.has("qr-rotate"):
        ctx.cms_control("POST", "/_sim/qr/rotate")
    return shown, wait_for_new_qr(ctx, egm_id, shown.url)


@scenario(
    "SCAN-004", "The CMS rotates the EGM's QR before it expires",
    requirement="Trustly Scan and Pay CMS duty: refresh the QR before expiresAt; "
                "docs/architecture.md §18 (EGMs, QR display and rotation: rotate at expiresAt - "
                "buffer)",
    tags=("scan", "qr", "rotation"), needs=("clock",),
    steps=("Make the EGM show a fresh QR; note its expiresAt.",
           "Move both clocks to the CMS's rotatesAt + 1 s, and no later than 10 s before expiry.",
           "Let the CMS rotate (its rotation tick, if offered; its screen otherwise).",
           "The EGM's QR image now decodes to a new url, of a code that is ACTIVE, while the "
           "old code has not expired yet."))
def scan_004(ctx: Context) -> None:
    ctx.need(ctx.target.egm_paths.qr_png is not None, "the target names no QR image path")
    egm_id = ctx.egm()
    old, new_url = _to_rotation(ctx, egm_id)
    ctx.expect("the EGM shows a new QR before the old one expires", "a different url",
               new_url, ok=new_url not in (old.url, NO_QR))
    old_view = ctx.scan(old.url)
    ctx.expect("the old code has not expired yet (rotation came first)", "ACTIVE",
               old_view.get("state"))
    new_view = ctx.scan(new_url) if new_url != NO_QR else {}
    ctx.expect("the new code is ACTIVE for the same EGM", ("ACTIVE", egm_id),
               (new_view.get("state"), new_view.get("egmId")))


@scenario(
    "SCAN-005", "A player who scanned just before a rotation can still pay",
    requirement="docs/architecture.md §15 (Funding API): a displayed token stays payable until "
                "Trustly's expiry, also after rotation (QR_TOKEN_MISMATCH only for tokens "
                "never shown on the EGM)",
    tags=("scan", "rotation", "pay"), needs=("clock",),
    steps=("Make the EGM show a fresh QR; a phone scans it.",
           "Move both clocks past the rotation (before expiry) and let the CMS rotate.",
           "The EGM's QR image now shows another code (the rotation really happened: a CMS "
           "that never rotates fails here).",
           "The phone pays with the old code: CREDITED, the meter goes up by the amount."))
def scan_005(ctx: Context) -> None:
    ctx.need(ctx.target.egm_paths.qr_png is not None, "the target names no QR image path")
    egm_id = ctx.egm()
    before = ctx.meters([egm_id])
    old, shown_now = _to_rotation(ctx, egm_id)
    payment = ctx.pay(old.url, 700, username=ctx.player())
    ctx.expect_rise("the meter went up by the amount paid with the rotated-away code",
                    before, 700)
    ctx.expect("the EGM shows another code after the rotation", "a different url", shown_now,
               ok=shown_now not in (old.url, NO_QR))
    ctx.expect("the payment with the rotated-away code is CREDITED", "CREDITED",
               payment.get("status"))


@scenario(
    "SCAN-006", "An expired QR cannot be paid",
    requirement="Trustly Scan and Pay: QR tokens expire (expiresAt); docs/architecture.md §10 (QR "
                "Code API)",
    tags=("scan", "expiry"), needs=("clock",),
    steps=("Make the EGM show a fresh QR.",
           "Move both clocks past its expiresAt (plus Trustly's 30 s leeway).",
           "A phone opening it sees EXPIRED; paying is refused 410 QR_CODE_EXPIRED; the meter "
           "does not move."))
def scan_006(ctx: Context) -> None:
    egm_id = ctx.egm()
    before = ctx.meters([egm_id])
    shown = ctx.qr(egm_id)
    view = ctx.scan(shown.url)
    trustly_now = ctx.trustly_admin("/_sim/clock")["now"]
    ctx.advance(expires_in_s(str(view["expiresAt"]), trustly_now) + LEEWAY_S + 1)
    ctx.expect("a phone opening it sees EXPIRED", "EXPIRED", ctx.scan(shown.url).get("state"))
    refused = ctx.pay_response(shown.url, 500, username=ctx.player())
    ctx.expect("paying is refused 410", 410, refused.status_code)
    ctx.expect("with QR_CODE_EXPIRED", "QR_CODE_EXPIRED", trustly_error(refused).get("reason"))
    ctx.expect_rise("the meter did not move", before, 500, 0)


@scenario(
    "SCAN-007", "A code Trustly never issued is refused",
    requirement="docs/architecture.md §11 (Player microsite): clear answers for unknown codes",
    tags=("scan", "bad-input"),
    steps=("Pay with /scan/<random code>: 404 QR_CODE_UNKNOWN.",))
def scan_007(ctx: Context) -> None:
    url = f"{ctx.target.trustly.base_url}/scan/{secrets.token_urlsafe(22)}"
    refused = ctx.pay_response(url, 500, username=ctx.player())
    ctx.expect("404", 404, refused.status_code)
    ctx.expect("QR_CODE_UNKNOWN", "QR_CODE_UNKNOWN", trustly_error(refused).get("reason"))


SCENARIOS = (scan_001, scan_002, scan_003, scan_004, scan_005, scan_006, scan_007)
