"""Reading the microsite's two HTML forms: the amount, then the bank login that pays it.

A person types amounts in major units ("25" or "25.50"); `simkit.money.parse_typed_amount`
reads them, and refuses what could mean two things (`20,5`) instead of guessing. The amount
page's answer is a confirmation page that shows the amount and carries it on in integer
minor units, so the paying form never reads typed text: what is paid is what was shown.
Everything else is validated by `state_machine.parse_payment_request`, exactly as for the JSON API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simkit.errors import BadRequest
from simkit.money import MinorUnits, parse_minor, parse_typed_amount

CUSTOM = "custom"  # the value of the amount choice that means "use the typed amount"
MAX_FIELD_CHARS = 200
FIELDS = ("custom_amount", "amount", "username", "password")


def check_lengths(form: Mapping[str, str]) -> None:
    """Refuse (400) any field longer than a person could mean to type."""
    for name in FIELDS:
        if len(form.get(name, "")) > MAX_FIELD_CHARS:
            raise BadRequest(f"The {name.replace('_', ' ')} is too long.", field=name)


def amount_from_form(form: Mapping[str, str], currency: str) -> MinorUnits:
    """The chosen amount in minor units: the typed one when filled in, else the chosen button.

    A typed amount wins because typing is the more deliberate act (the page's script clears
    it when a button is picked, so this only matters without JavaScript).
    """
    check_lengths(form)
    typed = form.get("custom_amount", "").strip()
    choice = form.get("amount", "").strip()
    if typed or choice == CUSTOM:
        if not typed:
            raise BadRequest("Type the amount you want, or pick one of the buttons.",
                             code="MISSING_FIELD", field="amount")
        return parse_typed_amount(typed, currency)
    if not choice:
        raise BadRequest("Choose an amount.", code="MISSING_FIELD", field="amount")
    return parse_minor(choice)


def payment_body(form: Mapping[str, str], currency: str) -> dict[str, Any]:
    """The JSON-API body the confirmation page's form stands for (one shared validation).

    Its amount is the confirmed one, in minor units. A typed amount is refused here: it has
    not been shown back to the person yet, and paying it unseen is how `20,5` became $205.
    """
    check_lengths(form)
    if form.get("custom_amount", "").strip():
        raise BadRequest("Confirm the amount before logging in to your bank.",
                         code="AMOUNT_NOT_CONFIRMED", field="amount")
    confirmed = form.get("amount", "").strip()
    if not confirmed:
        raise BadRequest("Choose an amount.", code="MISSING_FIELD", field="amount")
    return {
        "amount": parse_minor(confirmed),
        "currency": currency,
        "bank": {"username": form.get("username", "").strip(),
                 "password": form.get("password", "")},
    }
