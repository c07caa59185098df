"""The player's microsite pages: the scan form, its outcomes, and a page per unusable code.

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

from sim_trustly.microsite.forms import parse_major
from simkit.clock import ManualClock
from simkit.errors import SimError
from tests.api.scan_helpers import EGM, Floor

pytestmark = pytest.mark.db


@pytest.fixture
def floor(pay_pair: tuple[Flask, Flask]) -> Floor:
    return Floor(*pay_pair)


def form(amount: str = "2000", username: str = "alice", password: str = "pw",
         **extra: str) -> dict[str, str]:
    return {"amount": amount, "username": username, "password": password, **extra}


def submit(floor: Floor, code: str, data: dict[str, str] | None = None) -> Any:
    return floor.trustly.post(f"/scan/{code}", data=form() if data is None else data)


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


def test_scan_page_shows_egm_casino_amounts_and_bank_login(floor: Floor) -> None:
    response = floor.trustly.get(f"/scan/{floor.show_qr()}")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    text = text_of(response)
    for expected in (EGM, "Demo Casino", "$20.00", "$50.00", "Demo Bank", "Username",
                     "Password", "Approve", "NotEnoughFunds", "LoginError", "AccountLocked",
                     "Unavailable", "TimeoutError", "Sleep"):
        assert expected in text


def test_scan_page_is_mobile_ready_and_every_input_has_a_label(floor: Floor) -> None:
    page = audit(floor.trustly.get(f"/scan/{floor.show_qr()}"))
    assert page.viewport
    ids = {i.get("id") for i in page.inputs if i.get("type") != "radio"}
    assert {"custom_amount", "username", "password"} <= ids
    assert ids <= page.label_for
    radios = [i for i in page.inputs if i.get("type") == "radio"]
    assert radios and page.wrapped >= len(radios)


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
    (form(amount="custom", custom_amount="12.345"), "Enter the amount as a number"),
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


def test_refused_form_keeps_the_username_but_never_echoes_the_password(floor: Floor) -> None:
    response = submit(floor, floor.show_qr(), form(amount="", password="s3cret-pw"))
    html = response.get_data(as_text=True)
    assert 'value="alice"' in html
    assert "s3cret-pw" not in html


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


@pytest.mark.parametrize(("typed", "currency", "minor"), [
    ("12.5", "USD", 1250), ("$1,000.00", "USD", 100_000), ("7", "USD", 700),
    ("25", "JPY", 25), ("0.01", "EUR", 1),
])
def test_typed_amounts_become_exact_minor_units(typed: str, currency: str, minor: int) -> None:
    assert parse_major(typed, currency) == minor


@pytest.mark.parametrize(("typed", "currency"), [
    ("25.5", "JPY"), ("1.001", "USD"), ("1e3", "USD"), ("-5", "USD"), ("0.00", "USD"),
    ("", "USD"), ("NaN", "USD"), ("12345678901.00", "USD"),
])
def test_typed_amounts_that_are_not_exact_money_are_refused(typed: str, currency: str) -> None:
    with pytest.raises(SimError) as refused:
        parse_major(typed, currency)
    assert refused.value.http_status == 400
