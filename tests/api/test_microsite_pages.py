"""The player's microsite pages: the amount form, its confirmation with the bank login, the
outcomes, and a page per unusable code.

Driven without JavaScript (plain form POSTs), as the pages must work that way; the CMS meter
is the proof of what was credited.
"""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask

from simkit.clock import ManualClock
from tests.api.scan_helpers import EGM, Floor

pytestmark = pytest.mark.db


@pytest.fixture
def floor(pay_pair: tuple[Flask, Flask]) -> Floor:
    return Floor(*pay_pair)


def form(amount: str = "2000", username: str = "alice", password: str = "pw",
         **extra: str) -> dict[str, str]:
    return {"amount": amount, "username": username, "password": password, **extra}


def confirm(floor: Floor, code: str, amount: str = "2000", **extra: str) -> Any:
    """Post the amount page's form: the confirmation page (or the amount page, refused)."""
    return floor.trustly.post(f"/scan/{code}/confirm", data={"amount": amount, **extra})


def confirmed_amount(page: Any) -> str:
    """The amount the confirmation page's form carries on to the payment."""
    found = re.search(r'<input type="hidden" name="amount" value="([^"]*)">',
                      page.get_data(as_text=True))
    assert found, page.get_data(as_text=True)
    return found.group(1)


def submit(floor: Floor, code: str, data: dict[str, str] | None = None) -> Any:
    """Choose the amount, confirm it, and log in at the bank, as a person does.

    Amount errors answer at the first step; then the bank form is posted with what the
    confirmation page carries (not what was typed)."""
    data = form() if data is None else data
    amounts = {k: v for k, v in data.items() if k in ("amount", "custom_amount")}
    page = confirm(floor, code, **amounts)
    if page.status_code != 200:
        return page
    bank = {k: v for k, v in data.items() if k in ("username", "password")}
    return floor.trustly.post(f"/scan/{code}", data={"amount": confirmed_amount(page), **bank})


def text_of(response: Any) -> str:
    """The page's visible text with whitespace collapsed (tags dropped)."""
    html = response.get_data(as_text=True)
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


class FormAudit(HTMLParser):
    """Collects inputs and labels to check every visible input has a label."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[dict[str, str | None]] = []
        self.label_for: set[str] = set()
        self.wrapped = 0  # inputs nested in a <label>
        self._in_label = 0
        self.viewport = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "meta" and a.get("name") == "viewport":
            self.viewport = "width=device-width" in (a.get("content") or "")
        if tag == "label":
            self._in_label += 1
            if a.get("for"):
                self.label_for.add(str(a["for"]))
        if tag == "input":
            self.inputs.append(a)
            self.wrapped += bool(self._in_label)

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._in_label -= 1


def audit(response: Any) -> FormAudit:
    parser = FormAudit()
    parser.feed(response.get_data(as_text=True))
    return parser


def test_scan_page_shows_egm_casino_and_amounts(floor: Floor) -> None:
    response = floor.trustly.get(f"/scan/{floor.show_qr()}")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    text = text_of(response)
    for expected in (EGM, "Demo Casino", "$20.00", "$50.00", "Or type an amount", "Continue"):
        assert expected in text


def test_confirmation_shows_the_amount_as_read_then_the_bank_login(floor: Floor) -> None:
    code = floor.show_qr()
    response = confirm(floor, code, amount="custom", custom_amount="1,234.5")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    text = text_of(response)
    assert "You are paying $1,234.50 to EGM-001 at Demo Casino" in text
    for expected in ("Demo Bank", "Username", "Password", "Approve $1,234.50",
                     "NotEnoughFunds", "LoginError", "AccountLocked", "Unavailable",
                     "TimeoutError", "Sleep", "Change the amount"):
        assert expected in text
    assert confirmed_amount(response) == "123450"
    assert floor.meter() == 0  # confirming pays nothing and keeps the code
    assert floor.trustly.get(f"/scan/{code}").status_code == 200


def test_scan_pages_are_mobile_ready_and_every_input_has_a_label(floor: Floor) -> None:
    code = floor.show_qr()
    page = audit(floor.trustly.get(f"/scan/{code}"))
    assert page.viewport
    ids = {i.get("id") for i in page.inputs if i.get("type") != "radio"}
    assert ids == {"custom_amount"} and ids <= page.label_for
    radios = [i for i in page.inputs if i.get("type") == "radio"]
    assert radios and page.wrapped >= len(radios)
    bank = audit(confirm(floor, code))
    assert bank.viewport
    ids = {i.get("id") for i in bank.inputs if i.get("type") != "hidden"}
    assert ids == {"username", "password"} and ids <= bank.label_for


@pytest.mark.parametrize(("typed", "says"), [
    ("20,5", "Use a dot for cents: type 20.5, not 20,5."),
    ("0,99", "Use a dot for cents: type 0.99, not 0,99."),
    ("1,23,4", "Put commas only between groups of three digits"),
    ("12.345", "at most 2 decimals"),
])
def test_an_amount_that_could_mean_two_things_is_refused_and_nothing_is_paid(
    floor: Floor, typed: str, says: str
) -> None:
    code = floor.show_qr()
    response = confirm(floor, code, amount="custom", custom_amount=typed)
    assert response.status_code == 400
    assert says in text_of(response)
    assert f'value="{typed}"' in response.get_data(as_text=True)  # kept, to correct it
    assert "Demo Bank" not in text_of(response)  # not on to the bank
    # Posting the typed amount straight to the paying form is refused too.
    straight = floor.trustly.post(f"/scan/{code}", data=form(amount="custom",
                                                            custom_amount=typed))
    assert straight.status_code == 400
    assert floor.meter() == 0
    assert floor.trustly.get(f"/scan/{code}").status_code == 200  # the code is still good


def test_a_typed_amount_is_never_paid_without_its_confirmation(floor: Floor) -> None:
    code = floor.show_qr()
    response = floor.trustly.post(f"/scan/{code}", data=form(custom_amount="20.50"))
    assert response.status_code == 400
    assert "Confirm the amount" in text_of(response)
    assert floor.meter() == 0


def test_thousands_separators_are_read_as_thousands(floor: Floor) -> None:
    floor.set_daily_limit("alice", 1_000_000)
    response = submit(floor, floor.show_qr(), form(amount="custom", custom_amount="1,234"))
    assert response.status_code == 303
    assert "Credited $1,234.00" in text_of(floor.trustly.get(response.headers["Location"]))
    assert floor.meter() == 123_400


def test_form_payment_credits_the_egm_and_shows_the_receipt(floor: Floor) -> None:
    response = submit(floor, floor.show_qr())
    assert response.status_code == 303
    receipt = floor.trustly.get(response.headers["Location"])
    assert receipt.status_code == 200
    assert "Credited $20.00 to EGM-001" in text_of(receipt)
    assert floor.meter() == 2000


def test_typed_amount_in_dollars_and_cents_is_credited(floor: Floor) -> None:
    response = submit(floor, floor.show_qr(), form(amount="custom", custom_amount="12.50"))
    assert response.status_code == 303
    assert "Credited $12.50" in text_of(floor.trustly.get(response.headers["Location"]))
    assert floor.meter() == 1250


def test_typed_amount_wins_over_a_chosen_button_without_javascript(floor: Floor) -> None:
    submit(floor, floor.show_qr(), form(amount="5000", custom_amount="7"))
    assert floor.meter() == 700


def test_reopening_a_paid_code_shows_already_used_with_the_outcome(floor: Floor) -> None:
    code = floor.show_qr()
    submit(floor, code)
    response = floor.trustly.get(f"/scan/{code}")
    assert response.status_code == 409
    text = text_of(response)
    assert "already been used" in text
    assert "Credited $20.00 to EGM-001" in text


def test_submitting_twice_credits_once(floor: Floor) -> None:
    code = floor.show_qr()
    assert submit(floor, code).status_code == 303
    again = submit(floor, code, form(amount="5000"))
    assert again.status_code == 409
    assert "already been used" in text_of(again)
    assert floor.meter() == 2000


def test_expired_code_page_is_410_and_paying_it_credits_nothing(
    floor: Floor, clock: ManualClock
) -> None:
    code = floor.show_qr()
    clock.advance(301)
    page = floor.trustly.get(f"/scan/{code}")
    assert page.status_code == 410
    assert "expired" in text_of(page)
    assert submit(floor, code).status_code == 410
    assert floor.meter() == 0


def test_a_code_that_expires_on_the_confirmation_page_pays_nothing(
    floor: Floor, clock: ManualClock
) -> None:
    code = floor.show_qr()
    page = confirm(floor, code, amount="5000")
    assert page.status_code == 200
    clock.advance(301)
    assert confirm(floor, code).status_code == 410
    paid = floor.trustly.post(f"/scan/{code}", data=form(amount=confirmed_amount(page)))
    assert paid.status_code == 410
    assert "expired" in text_of(paid)
    assert floor.meter() == 0


def test_unknown_code_page_is_404(floor: Floor) -> None:
    response = floor.trustly.get("/scan/AAAAAAAAAAAAAAAAAAAAAA")
    assert response.status_code == 404
    assert "don't recognise this QR code" in text_of(response)
    assert submit(floor, "AAAAAAAAAAAAAAAAAAAAAA").status_code == 404


def test_code_of_a_merchant_trustly_no_longer_knows_is_403(floor: Floor) -> None:
    code = floor.show_qr()
    floor.forget_merchant()
    response = floor.trustly.get(f"/scan/{code}")
    assert response.status_code == 403
    assert "isn't valid for this casino" in text_of(response)
    assert submit(floor, code).status_code == 403
    assert floor.meter() == 0


@pytest.mark.parametrize(("data", "message"), [
    (form(amount=""), "Choose an amount"),
    (form(amount="custom"), "Type the amount"),
    (form(amount="custom", custom_amount="12.345"), "at most 2 decimals"),
    (form(amount="custom", custom_amount="ten"), "Enter the amount as a number"),
    (form(amount="custom", custom_amount="0"), "more than zero"),
    (form(amount="-5"), "amount"),
    (form(username=""), "username"),
])
def test_invalid_form_is_400_says_why_and_changes_nothing(
    floor: Floor, data: dict[str, str], message: str
) -> None:
    code = floor.show_qr()
    response = submit(floor, code, data)
    assert response.status_code == 400
    assert message.lower() in text_of(response).lower()
    assert 'role="alert"' in response.get_data(as_text=True)
    assert floor.trustly.get(f"/scan/{code}").status_code == 200
    assert floor.meter() == 0


def test_refused_bank_login_keeps_amount_and_username_but_never_echoes_the_password(
    floor: Floor
) -> None:
    secret = "s3cret-pw" + "x" * 200  # too long: refused at the bank step
    response = submit(floor, floor.show_qr(), form(amount="5000", password=secret))
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert 'value="alice"' in html and "You are paying $50.00" in text_of(response)
    assert "s3cret-pw" not in html
    assert floor.meter() == 0


def test_a_tampered_confirmed_amount_goes_back_to_the_amount_page(floor: Floor) -> None:
    code = floor.show_qr()
    response = floor.trustly.post(f"/scan/{code}", data=form(amount="20.50"))
    assert response.status_code == 400
    assert "Or type an amount" in text_of(response)
    assert floor.meter() == 0


def test_get_with_form_fields_in_the_query_pays_nothing(floor: Floor) -> None:
    code = floor.show_qr()
    response = floor.trustly.get(f"/scan/{code}?amount=2000&username=alice&password=pw")
    assert response.status_code == 200
    assert floor.meter() == 0
    assert floor.trustly.get(f"/scan/{code}").status_code == 200


def test_casino_rejection_is_explained_in_plain_words(floor: Floor) -> None:
    code = floor.show_qr()
    floor.set_egm_state("IN_GAME")
    receipt = floor.trustly.get(submit(floor, code).headers["Location"])
    assert receipt.status_code == 200
    text = text_of(receipt)
    assert "declined $20.00" in text
    assert "The machine is in a game" in text
    assert floor.meter() == 0


def test_bank_keyphrase_failure_is_explained_in_plain_words(floor: Floor) -> None:
    response = submit(floor, floor.show_qr(), form(password="NotEnoughFunds"))
    text = text_of(floor.trustly.get(response.headers["Location"]))
    assert "did not go through" in text
    assert "does not have enough money" in text
    assert floor.meter() == 0


def test_receipt_of_a_payment_still_on_its_way_refreshes_itself(floor: Floor) -> None:
    code = floor.show_qr()
    floor.cms_fault(path="/cws/v1/fundings*", action="drop")
    receipt = floor.trustly.get(submit(floor, code).headers["Location"])
    assert receipt.status_code == 200
    assert 'http-equiv="refresh"' in receipt.get_data(as_text=True)
    assert "Waiting for the casino" in text_of(receipt)


def test_unknown_receipt_is_404(floor: Floor) -> None:
    response = floor.trustly.get("/payments/pay-nope")
    assert response.status_code == 404
    assert "can't find this payment" in text_of(response)


def csp_directives(response: Any) -> dict[str, str]:
    policy = response.headers.get("Content-Security-Policy", "")
    return {d.split()[0]: " ".join(d.split()[1:]) for d in policy.split(";") if d.strip()}


def test_every_microsite_page_refuses_framing_and_foreign_scripts(floor: Floor) -> None:
    paid_code = floor.show_qr()
    paid = submit(floor, paid_code)
    code = floor.show_qr()
    pages = {
        "amount page": floor.trustly.get(f"/scan/{code}"),
        "bank login": confirm(floor, code),
        "refused amount": confirm(floor, code, amount="custom", custom_amount="20,5"),
        "redirect": paid,
        "receipt": floor.trustly.get(paid.headers["Location"]),
        "used code": floor.trustly.get(f"/scan/{paid_code}"),
        "unknown code": floor.trustly.get("/scan/AAAAAAAAAAAAAAAAAAAAAA"),
        "unknown receipt": floor.trustly.get("/payments/pay-nope"),
        "stylesheet": floor.trustly.get("/assets/microsite/microsite.css"),
        "script": floor.trustly.get("/assets/microsite/microsite.js"),
        "json api": floor.trustly.get(f"/api/v1/scan/{code}"),
    }
    for name, response in pages.items():
        directives = csp_directives(response)
        assert directives.get("default-src") == "'none'", name
        assert directives.get("frame-ancestors") == "'none'", name
        assert directives.get("script-src") == "'self'", name  # no inline, no eval, no CDN
        assert directives.get("form-action") == "'self'", name
        assert response.headers.get("X-Frame-Options") == "DENY", name
        assert response.headers.get("X-Content-Type-Options") == "nosniff", name


def test_pages_carry_no_inline_script_or_style_the_policy_would_block(floor: Floor) -> None:
    code = floor.show_qr()
    for response in (floor.trustly.get(f"/scan/{code}"), confirm(floor, code)):
        html = response.get_data(as_text=True)
        assert re.search(r"<script(?![^>]*\bsrc=)", html) is None
        assert "<style" not in html and " style=" not in html
        assert re.search(r"\son[a-z]+=", html) is None  # no inline event handlers
        assert '<script src="/assets/microsite/microsite.js"' in html
        assert '<link rel="stylesheet" href="/assets/microsite/microsite.css">' in html
    assert floor.trustly.get("/assets/microsite/microsite.js").mimetype == "text/javascript"
