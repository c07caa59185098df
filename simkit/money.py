"""Money as integer minor units plus an ISO 4217 currency, on the wire and in storage.

Floats never carry money here: a JSON `20.00` or `1e3` is refused rather than rounded,
because a rounding that differs between two systems is how ledgers drift apart.

Through the domain an amount is a `MinorUnits`, with its currency travelling beside it: a
type only mypy sees (at run time it is the int itself, so the hot paths pay nothing for it),
which keeps a count, a status or any other bare int from being passed where an amount is
meant. `Money` pairs the two for display and arithmetic between amounts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NewType

from simkit.errors import SimError

MinorUnits = NewType("MinorUnits", int)
"""An amount in integer minor units (cents for USD) of the currency that travels beside it.
Signed: a ledger leg or a difference can be negative; what the wire accepts is checked by
the parsers below."""

# Currencies the sims accept, with their number of minor-unit digits (ISO 4217).
MINOR_DIGITS: dict[str, int] = {
    "USD": 2, "EUR": 2, "GBP": 2, "CAD": 2, "AUD": 2, "SEK": 2, "NOK": 2, "DKK": 2,
    "CHF": 2, "MXN": 2, "JPY": 0, "KRW": 0, "MOP": 2, "PHP": 2, "SGD": 2, "NZD": 2,
}
# Keeps every amount far inside a signed 64-bit column and any JSON number parser.
MAX_MINOR = 10**12
# Used with fullmatch: `$` alone would also accept a trailing newline ("2000\n").
_CURRENCY = re.compile(r"[A-Z]{3}")
_DIGITS = re.compile(r"[1-9][0-9]{0,12}|0")  # canonical: no sign, no leading zeros
# An amount a person types: whole units with or without correctly placed thousands commas
# (`1234`, `1,234`), then optionally a dot and the minor digits. ASCII digits only (`\d`
# would also take Arabic-Indic and other digits). No leading zeros except a lone `0`.
_TYPED = re.compile(
    r"(?P<whole>0|[1-9][0-9]*|[1-9][0-9]{0,2}(?:,[0-9]{3})+)(?:\.(?P<frac>[0-9]+))?"
)
# A comma followed by one or two final digits is how much of Europe writes cents: `20,5`.
_DECIMAL_COMMA = re.compile(r"[0-9]+,[0-9]{1,2}")
# A currency sign a person may put in front, and the currencies it can stand for.
_SIGNS: dict[str, frozenset[str]] = {
    "$": frozenset({"USD", "CAD", "AUD", "MXN", "SGD", "NZD"}),
    "€": frozenset({"EUR"}),
    "£": frozenset({"GBP"}),
}


class InvalidAmount(SimError):
    """Raised when an amount is not a positive integer number of minor units in range."""

    def __init__(self, message: str, field: str = "amount") -> None:
        super().__init__("INVALID_AMOUNT", 400, message, field=field)


class InvalidCurrency(SimError):
    """Raised when a currency is not an upper-case ISO 4217 code the sims support."""

    def __init__(self, message: str, field: str = "currency") -> None:
        super().__init__("INVALID_CURRENCY", 400, message, field=field)


def parse_minor(value: Any, field: str = "amount") -> MinorUnits:
    """Return `value` as a positive integer of minor units, or raise `InvalidAmount`.

    Accepts a JSON integer or a string of digits. Refuses booleans, floats (even `20.0`),
    NaN, infinities, zero, negatives and anything above `MAX_MINOR`.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidAmount(f"{field} must be an integer number of minor units", field)
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise InvalidAmount(f"{field} must be digits only (minor units)", field)
    minor = int(value)
    if minor <= 0:
        raise InvalidAmount(f"{field} must be greater than zero", field)
    if minor > MAX_MINOR:
        raise InvalidAmount(f"{field} must be at most {MAX_MINOR}", field)
    return MinorUnits(minor)


def parse_typed_amount(text: str, currency: str, field: str = "amount") -> MinorUnits:
    """Minor units of an amount a person typed in major units, or raise `InvalidAmount`.

    Accepted only when it can mean one thing: `20`, `20.5`, `20.50`, `1,234`, `1,234.56`
    (and a leading currency sign of `currency`, `$20`). Refused, with a message saying what
    to type instead: a comma that is not a thousands separator (`20,5` and `0,99` are cents
    to half the world and hundreds to the other half, so they are never guessed), badly
    grouped thousands (`1,23,4`), more decimals than `currency` has (never rounded), signs,
    spaces inside, anything but ASCII digits, zero, empty, and anything above `MAX_MINOR`.
    """
    digits = MINOR_DIGITS[parse_currency(currency)]
    example = "25" if digits == 0 else "25 or 25." + "5".ljust(digits, "0")
    typed = text.strip()
    if typed[:1] in _SIGNS and currency in _SIGNS[typed[:1]]:
        typed = typed[1:]
    if not typed:
        raise InvalidAmount("Type the amount you want to pay.", field)
    match = _TYPED.fullmatch(typed)
    if match is None:
        raise InvalidAmount(_why_refused(typed, digits, example), field)
    frac = match.group("frac") or ""
    if len(frac) > digits:
        raise InvalidAmount(_too_many_decimals(currency, digits, example), field)
    scale: int = 10**digits
    minor = int(match.group("whole").replace(",", "")) * scale + int(frac.ljust(digits, "0") or "0")
    if minor == 0:
        raise InvalidAmount("The amount must be more than zero.", field)
    if minor > MAX_MINOR:
        raise InvalidAmount(f"The amount must be at most {_major(MAX_MINOR, digits)}.", field)
    return MinorUnits(minor)


def _why_refused(typed: str, digits: int, example: str) -> str:
    """The message for a typed amount that does not read as one number."""
    if typed.startswith("-"):
        return "The amount must be more than zero."
    if digits and _DECIMAL_COMMA.fullmatch(typed):
        return f"Use a dot for cents: type {typed.replace(',', '.')}, not {typed}."
    if "," in typed:
        return ("Put commas only between groups of three digits (1,234), "
                f"or leave them out: {example}.")
    return f"Enter the amount as a number, like {example}."


def _too_many_decimals(currency: str, digits: int, example: str) -> str:
    if digits == 0:
        return f"{currency} amounts have no decimals: type a whole number, like {example}."
    return f"{currency} amounts have at most {digits} decimals, like {example}."


def _major(minor: int, digits: int) -> str:
    whole, frac = divmod(minor, 10**digits)
    return f"{whole:,}" + (f".{frac:0{digits}d}" if digits else "")


def parse_currency(value: Any, field: str = "currency") -> str:
    """Return `value` if it is a supported ISO 4217 code, else raise `InvalidCurrency`."""
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise InvalidCurrency(f"{field} must be a three-letter ISO 4217 code", field)
    if value not in MINOR_DIGITS:
        raise InvalidCurrency(f"currency {value} is not supported", field)
    return value


@dataclass(frozen=True)
class Money:
    """An amount of one currency in minor units (cents for USD)."""

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.minor, bool) or not isinstance(self.minor, int):
            raise TypeError("Money.minor must be an int")
        parse_currency(self.currency)

    @classmethod
    def parse(cls, amount: Any, currency: Any) -> Money:
        """Build Money from wire values, validating both (amount must be positive)."""
        return cls(parse_minor(amount), parse_currency(currency))

    def to_json(self) -> dict[str, Any]:
        """The wire shape: `{"amount": 2000, "currency": "USD"}`."""
        return {"amount": self.minor, "currency": self.currency}

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.minor - other.minor, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot mix {self.currency} and {other.currency}")

    def display(self) -> str:
        """Human form for pages and reports, e.g. `USD 1,000.00`."""
        digits = MINOR_DIGITS[self.currency]
        sign = "-" if self.minor < 0 else ""
        whole, frac = divmod(abs(self.minor), 10**digits)
        text = f"{whole:,}" + (f".{frac:0{digits}d}" if digits else "")
        return f"{sign}{self.currency} {text}"
