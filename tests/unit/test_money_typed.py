"""Amounts people type: read only when they can mean one thing, refused with a reason otherwise.

The properties check the parser against an independent reading (Python's `Decimal` over a
plain split on the dot and the commas), over strings built from digits, commas and dots,
which is where `20,5` used to become $205.00.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from simkit.money import MAX_MINOR, InvalidAmount, parse_typed_amount

PROPERTY_SETTINGS = settings(max_examples=400, deadline=None)


@pytest.mark.parametrize(("typed", "minor"), [
    ("20", 2000), ("20.5", 2050), ("20.50", 2050), ("1,234.56", 123_456), ("1,234", 123_400),
    ("0.99", 99), (" 7 ", 700), ("$1,000.00", 100_000), ("12,345,678.9", 1_234_567_890),
])
def test_what_a_person_means_is_read_exactly(typed: str, minor: int) -> None:
    assert parse_typed_amount(typed, "USD") == minor


@pytest.mark.parametrize(("typed", "says"), [
    ("20,5", "Use a dot for cents: type 20.5"),
    ("0,99", "Use a dot for cents: type 0.99"),
    ("20,50", "Use a dot for cents: type 20.50"),
    ("1,23,4", "commas only between groups of three"),
    ("1,234,56", "commas only between groups of three"),
    ("12.345", "at most 2 decimals"),
    ("-5", "more than zero"),
    ("0", "more than zero"),
    ("0.00", "more than zero"),
    ("", "Type the amount"),
    ("   ", "Type the amount"),
    ("ten", "Enter the amount as a number"),
    ("1e3", "Enter the amount as a number"),
    ("20.", "Enter the amount as a number"),
    ("1 234", "Enter the amount as a number"),
    ("٢٠", "Enter the amount as a number"),  # Arabic-Indic digits are not ASCII digits
    ("€20", "Enter the amount as a number"),  # a euro sign on a dollar machine
    ("10000000001", "at most 10,000,000,000.00"),
])
def test_ambiguous_or_malformed_amounts_are_refused_with_a_reason(typed: str, says: str) -> None:
    with pytest.raises(InvalidAmount) as refused:
        parse_typed_amount(typed, "USD")
    assert refused.value.http_status == 400
    assert refused.value.code == "INVALID_AMOUNT"
    assert says in refused.value.message


def test_a_currency_without_minor_units_takes_whole_numbers_only() -> None:
    assert parse_typed_amount("1,234", "JPY") == 1234
    with pytest.raises(InvalidAmount, match="no decimals"):
        parse_typed_amount("25.5", "JPY")


def renderings(minor: int) -> list[str]:
    """Every canonical way to write `minor` cents: with and without thousands commas,
    two decimals, one decimal when that is exact, none when the amount is whole."""
    whole, cents = divmod(minor, 100)
    texts = []
    for head in (str(whole), f"{whole:,}"):
        texts.append(f"{head}.{cents:02d}")
        if cents % 10 == 0:
            texts.append(f"{head}.{cents // 10}")
        if cents == 0:
            texts.append(head)
    return texts


@PROPERTY_SETTINGS
@given(st.integers(min_value=1, max_value=MAX_MINOR))
@example(1)
@example(99)
@example(100_000)
@example(MAX_MINOR)
def test_every_canonical_rendering_reads_back_to_the_same_amount(minor: int) -> None:
    for text in renderings(minor):
        assert parse_typed_amount(text, "USD") == minor, text


def person_reads(text: str) -> Decimal | None:
    """How a person reading English-style amounts takes `text`: None when it could mean two
    things or is not an amount. Written apart from the parser (split and Decimal, no regex)."""
    whole, dot, cents = text.partition(".")
    if (dot and not 1 <= len(cents) <= 2) or not whole:  # a third decimal is not cents
        return None
    groups = whole.split(",")
    first_ok = 1 <= len(groups[0]) <= (3 if len(groups) > 1 else len(groups[0]))
    if not first_ok or any(len(group) != 3 for group in groups[1:]):
        return None
    digits = "".join(groups)
    if len(digits) > 1 and digits.startswith("0"):
        return None
    try:
        return Decimal(digits + ("." + cents if dot else ""))
    except InvalidOperation:
        return None


amount_like = st.text(alphabet="0123456789,.", min_size=1, max_size=14)


@PROPERTY_SETTINGS
@given(amount_like)
@example("20,5")
@example("0,99")
@example("1,23,4")
@example("1,234")
@example("1,234.56")
def test_whatever_is_accepted_is_what_a_person_reads(text: str) -> None:
    meant = person_reads(text)
    try:
        minor = parse_typed_amount(text, "USD")
    except InvalidAmount:
        in_range = meant is not None and 0 < meant * 100 <= MAX_MINOR
        assert not in_range, f"{text!r} means {meant} but was refused"
        return
    assert meant is not None, f"{text!r} was accepted as {minor} but means nothing certain"
    assert Decimal(minor) == meant * 100, f"{text!r} read as {minor}, a person reads {meant}"


@PROPERTY_SETTINGS
@given(st.integers(min_value=0, max_value=999), st.integers(min_value=0, max_value=99))
def test_a_comma_before_one_or_two_final_digits_is_never_read(whole: int, cents: int) -> None:
    for text in (f"{whole},{cents}", f"{whole},{cents:02d}"):
        with pytest.raises(InvalidAmount, match="Use a dot for cents"):
            parse_typed_amount(text, "USD")
