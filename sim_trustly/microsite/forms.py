"""Reading the microsite's HTML form into a TPAS `PaymentRequest`.

A person types amounts in major units ("25" or "25.50"), while the wire and TPAS speak
integer minor units; the conversion is pure integer arithmetic so no float ever rounds money.
Everything else is validated by `tpas.parse_payment_request`, exactly as for the JSON API.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from simkit.errors import BadRequest
from simkit.money import MINOR_DIGITS, parse_minor

CUSTOM = "custom"  # the value of the amount choice that means "use the typed amount"
MAX_FIELD_CHARS = 200
_MAJOR = re.compile(r"(?P<whole>[0-9]{1,10})(?:\.(?P<frac>[0-9]+))?")
_IGNORED = str.maketrans("", "", " ,$€£")  # symbols and thousands separators people type


def parse_major(text: str, currency: str) -> int:
    """Minor units of an amount a person typed ("25", "25.5", "$1,000.00"), or raise 400.

    Refuses more decimals than the currency has (no silent rounding), zero and negatives.
    """
    digits = MINOR_DIGITS[currency]
    match = _MAJOR.fullmatch(text.translate(_IGNORED))
    frac = (match.group("frac") or "") if match else ""
    if match is None or len(frac) > digits:
        example = "25" if digits == 0 else "25 or 25." + "5".ljust(digits, "0")
        raise BadRequest(f"Enter the amount as a number, like {example}.",
                         code="INVALID_AMOUNT", field="amount")
    minor = int(match.group("whole")) * 10**digits + int(frac.ljust(digits, "0") or "0")
    if minor == 0:
        raise BadRequest("The amount must be more than zero.", code="INVALID_AMOUNT",
                         field="amount")
    return parse_minor(minor)


def amount_from_form(form: Mapping[str, str], currency: str) -> int:
    """The chosen amount in minor units: the typed one when filled in, else the chosen button.

    A typed amount wins because typing is the more deliberate act (the page's script clears
    it when a button is picked, so this only matters without JavaScript).
    """
    typed = form.get("custom_amount", "").strip()
    choice = form.get("amount", "").strip()
    if typed or choice == CUSTOM:
        if not typed:
            raise BadRequest("Type the amount you want, or pick one of the buttons.",
                             code="MISSING_FIELD", field="amount")
        return parse_major(typed, currency)
    if not choice:
        raise BadRequest("Choose an amount.", code="MISSING_FIELD", field="amount")
    return parse_minor(choice)


def payment_body(form: Mapping[str, str], currency: str) -> dict[str, Any]:
    """The JSON-API body the form stands for, so both paths share one validation."""
    for name in ("custom_amount", "amount", "username", "password"):
        if len(form.get(name, "")) > MAX_FIELD_CHARS:
            raise BadRequest(f"The {name.replace('_', ' ')} is too long.", field=name)
    return {
        "amount": amount_from_form(form, currency),
        "currency": currency,
        "bank": {"username": form.get("username", "").strip(),
                 "password": form.get("password", "")},
    }
