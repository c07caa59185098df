"""Properties of money parsing over random amounts, currencies and junk values.

On failure Hypothesis prints the falsifying example and a reproduction blob.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simkit.money import (
    MAX_MINOR,
    MINOR_DIGITS,
    InvalidAmount,
    InvalidCurrency,
    Money,
    parse_currency,
    parse_minor,
)

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)

valid_minor = st.integers(min_value=1, max_value=MAX_MINOR)
currencies = st.sampled_from(sorted(MINOR_DIGITS))
moneys = st.builds(Money, valid_minor, currencies)

not_positive = st.integers(max_value=0)
too_large = st.integers(min_value=MAX_MINOR + 1)
any_float = st.floats(allow_nan=True, allow_infinity=True)
integral_floats = st.integers(min_value=-(2**53), max_value=2**53).map(float)
other_types = st.one_of(
    st.none(), st.booleans(), st.binary(), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.decimals(),
)
# Digit strings spoiled by a sign, a space, a decimal point or another non-digit.
spoiled_digits = st.tuples(
    st.text(alphabet="0123456789", max_size=6),
    st.sampled_from(["-", "+", " ", ".", ",", "_", "e", "\n", "\t", "x", "\u0661"]),
    st.text(alphabet="0123456789", max_size=6),
).map("".join)
non_digit_text = st.text(max_size=20).filter(lambda s: re.fullmatch(r"[0-9]+", s) is None)


def assert_invalid_amount(value: Any) -> None:
    """`value` is refused with the client-facing INVALID_AMOUNT error."""
    with pytest.raises(InvalidAmount) as caught:
        parse_minor(value)
    assert (caught.value.code, caught.value.http_status) == ("INVALID_AMOUNT", 400)


@PROPERTY_SETTINGS
@given(moneys)
def test_wire_form_parses_back_to_the_same_money(money: Money) -> None:
    assert Money.parse(**money.to_json()) == money


@PROPERTY_SETTINGS
@given(moneys)
def test_digit_string_form_parses_back_to_the_same_money(money: Money) -> None:
    assert Money.parse(str(money.minor), money.currency) == money


@PROPERTY_SETTINGS
@given(st.one_of(any_float, integral_floats))
def test_floats_are_refused_even_when_integral(value: float) -> None:
    assert_invalid_amount(value)


@PROPERTY_SETTINGS
@given(st.one_of(not_positive, too_large))
def test_integers_outside_one_to_max_are_refused(value: int) -> None:
    assert_invalid_amount(value)
    assert_invalid_amount(str(value))


@PROPERTY_SETTINGS
@given(other_types)
def test_values_of_other_types_are_refused(value: Any) -> None:
    assert_invalid_amount(value)


@PROPERTY_SETTINGS
@given(st.one_of(spoiled_digits, non_digit_text))
def test_strings_that_are_not_plain_digits_are_refused(value: str) -> None:
    assert_invalid_amount(value)


@PROPERTY_SETTINGS
@given(
    st.one_of(st.text(max_size=5), st.from_regex(r"[A-Z]{3}", fullmatch=True))
    .filter(lambda s: s not in MINOR_DIGITS)
)
def test_currency_other_than_a_supported_code_is_refused(value: str) -> None:
    with pytest.raises(InvalidCurrency) as caught:
        parse_currency(value)
    assert (caught.value.code, caught.value.http_status) == ("INVALID_CURRENCY", 400)


@PROPERTY_SETTINGS
@given(moneys, valid_minor)
def test_adding_then_subtracting_gives_back_the_original(money: Money, minor: int) -> None:
    other = Money(minor, money.currency)
    assert (money + other) - other == money
