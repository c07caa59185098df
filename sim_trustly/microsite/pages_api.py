"""The microsite's pages: the amount page, its confirmation with the bank login, state pages,
the receipt.

Plain server-rendered HTML that works without JavaScript. The amount form POSTs to
`/scan/<code>/confirm`, which changes nothing and answers with the amount as it was read
("Add $20.50 to EGM-004") and the bank login; that form POSTs to the scan page and is
redirected (303) to the payment's receipt, so a reload never pays twice. Every page answers
with the status its situation deserves (410 expired, 409 used, 404 unknown, 403 wrong
merchant, 400 for a form that does not validate) and is never cached, because a code's state
changes within minutes. Only POST to the scan page changes state.

Every response carries `security.HEADERS`: a Content-Security-Policy that allows only this
site's own scripts and styles (the pages have no inline ones) and no framing, so another site
cannot dress the bank login in its own frame.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from sim_trustly.context import trustly
from sim_trustly.microsite.forms import amount_from_form, payment_body
from sim_trustly.microsite.security import add_security_headers
from sim_trustly.microsite.wording import money_text, outcome_headline, reason_text
from sim_trustly.tpas import state_machine
from sim_trustly.tpas.state_machine import PaymentView, ScanView
from simkit.errors import SimError
from simkit.money import MinorUnits, parse_minor

bp = Blueprint("microsite", __name__, template_folder="templates", static_folder="static",
               static_url_path="/assets/microsite")
bp.after_request(add_security_headers)

NO_STORE = {"Cache-Control": "no-store"}
STATE_STATUS = {"ACTIVE": 200, "EXPIRED": 410, "USED": 409, "UNKNOWN": 404,
                "WRONG_MERCHANT": 403}
QR_ERRORS = (state_machine.QrCodeUnknown, state_machine.QrCodeExpired,
             state_machine.QrCodeInvalid, state_machine.QrCodeUsed,
             state_machine.QrCodeWrongMerchant)
KEYPHRASES = ("NotEnoughFunds", "LoginError", "AccountLocked", "Unavailable", "TimeoutError")
RECEIPT_REFRESH_S = 2  # how often a receipt still waiting for the casino reloads itself

Page = tuple[str, int, dict[str, str]]


@bp.get("/scan/<code>")
def scan_page(code: str) -> Page:
    """The page the QR opens: the payment form, or the page for the code's state."""
    scan = state_machine.describe_scan(trustly(), code)
    if scan.state != "ACTIVE":
        return _state_page(scan)
    return _form_page(scan, {}, None)


@bp.post("/scan/<code>/confirm")
def scan_confirm(code: str) -> Page:
    """The amount as it was read, with the bank login; or the amount page (400) saying why."""
    scan = state_machine.describe_scan(trustly(), code)
    if scan.state != "ACTIVE":
        return _state_page(scan)
    try:
        minor = amount_from_form(request.form, scan.currency)
    except SimError as error:
        if error.http_status >= 500:
            raise
        return _form_page(scan, request.form, error)
    return _confirm_page(scan, minor, {}, None)


@bp.post("/scan/<code>")
def scan_pay(code: str) -> Page | Response:
    """Pay the confirmed amount: 303 to the receipt, or the page again (4xx) saying why."""
    ctx = trustly()
    scan = state_machine.describe_scan(ctx, code)
    if scan.state != "ACTIVE":
        return _state_page(scan)
    try:
        payment_request = state_machine.parse_payment_request(
            payment_body(request.form, scan.currency))
        payment = state_machine.pay_with_qr(ctx, code, payment_request)
    except QR_ERRORS as error:  # another phone or the clock got there between our two reads
        return _state_page(state_machine.describe_scan(ctx, code), error.http_status)
    except SimError as error:
        if error.http_status >= 500:
            raise
        return _refused_page(scan, request.form, error)
    response = redirect(url_for(".receipt_page", payment_id=payment.payment_id), 303)
    response.headers.update(NO_STORE)
    return response


@bp.get("/payments/<payment_id>")
def receipt_page(payment_id: str) -> Page:
    """How a payment ended (or that it is still on its way, reloading until it is not)."""
    try:
        payment = state_machine.get_payment(trustly(), payment_id)
    except SimError as error:
        if error.http_status != 404:
            raise
        page = render_template("scan_state.html", state="PAYMENT_UNKNOWN", casino=None,
                               egm_id=None, outcome=None)
        return page, 404, NO_STORE
    shown = {**outcome(payment), "retryUrl": _retry_url(payment)}
    page = render_template("scan_receipt.html", outcome=shown,
                           refresh_s=None if payment.definite else RECEIPT_REFRESH_S)
    return page, 200, NO_STORE


def _retry_url(payment: PaymentView) -> str | None:
    """The scan page again, when the bank refused this payment, its QR code was handed back
    and nobody has paid with it since nor has it expired: the player may simply try again."""
    if not payment.qr_released or payment.qr_code is None:
        return None
    if state_machine.describe_scan(trustly(), payment.qr_code).state != "ACTIVE":
        return None
    return url_for(".scan_page", code=payment.qr_code)


def outcome(payment: PaymentView) -> dict[str, object]:
    """What the pages show of a payment: headline, plain-words reason, amount, status."""
    amount = money_text(payment.amount, payment.currency)
    failed = payment.status in ("REJECTED_VOIDED", "FAILED_VOIDED")
    meter = payment.credit_meter
    return {
        "status": payment.status,
        "paymentId": payment.payment_id,
        "egmId": payment.egm_id,
        "amount": amount,
        "headline": outcome_headline(payment.status, amount, payment.egm_id),
        "reason": reason_text(payment.reason) if failed else None,
        "reasonCode": payment.reason if failed else None,
        "pending": not payment.definite,
        "meter": money_text(meter, payment.currency) if meter is not None else None,
        "retryUrl": None,
    }


def _state_page(scan: ScanView, status: int | None = None) -> Page:
    """The page for a code that cannot pay (expired, used, unknown, wrong merchant)."""
    paid = outcome(scan.payment) if scan.payment is not None else None
    page = render_template("scan_state.html", state=scan.state, casino=scan.merchant_name,
                           egm_id=scan.egm_id, outcome=paid)
    return page, STATE_STATUS.get(scan.state, status or 400), NO_STORE


def _remaining_s(scan: ScanView) -> int:
    if scan.expires_at is None:
        return 0
    return max(0, int((scan.expires_at - trustly().clock.now()).total_seconds()))


def _form_page(scan: ScanView, form: Mapping[str, str], error: SimError | None) -> Page:
    """The amount form, filled with what was sent and any error."""
    typed = form.get("custom_amount", "")
    choice = "" if typed else form.get("amount", "")
    page = render_template(
        "scan_form.html", code=scan.code, casino=scan.merchant_name, egm_id=scan.egm_id,
        currency=scan.currency, chosen=choice, typed=typed,
        amounts=[(str(a), money_text(a, scan.currency)) for a in scan.suggested_amounts],
        remaining_s=_remaining_s(scan),
        error=error.message if error else None, error_field=_field(error),
    )
    return page, error.http_status if error else 200, NO_STORE


def _confirm_page(
    scan: ScanView, minor: MinorUnits, form: Mapping[str, str], error: SimError | None
) -> Page:
    """The amount to confirm and the bank login (the username kept, never the password)."""
    page = render_template(
        "scan_confirm.html", code=scan.code, casino=scan.merchant_name, egm_id=scan.egm_id,
        minor=minor, amount=money_text(minor, scan.currency), remaining_s=_remaining_s(scan),
        username=form.get("username", ""), keyphrases=KEYPHRASES,
        error=error.message if error else None, error_field=_field(error),
    )
    return page, error.http_status if error else 200, NO_STORE


def _refused_page(scan: ScanView, form: Mapping[str, str], error: SimError) -> Page:
    """Back to the confirmation when only the bank login was wrong, else to the amount."""
    try:
        minor = parse_minor(form.get("amount", ""))
    except SimError:
        return _form_page(scan, {}, error)
    if _field(error) in ("amount", "currency"):
        return _form_page(scan, form, error)
    return _confirm_page(scan, minor, form, error)


def _field(error: SimError | None) -> str | None:
    """Which form field an error is about (`bank.username` -> `username`)."""
    if error is None:
        return None
    field = str(error.extra.get("field", ""))
    return field.rsplit(".", 1)[-1] or None
