"""Money: integer minor units and a supported currency, validated at the wire."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pytest

from simkit.errors import SimError
from simkit.money import (
    MAX_MINOR,
    InvalidAmount,
    InvalidCurrency,
    Money,
    parse_currency,
    parse_minor,
)


def test_integer_amount_is_taken_as_minor_units() -> None:
    assert parse_minor(2000) == 2000


def test_digit_string_amount_is_taken_as_minor_units() -> None:
    assert parse_minor("2000") == 2000


def test_largest_allowed_amount_is_accepted_as_int_and_as_string() -> None:
    assert parse_minor(MAX_MINOR) == MAX_MINOR
    assert parse_minor(str(MAX_MINOR)) == MAX_MINOR


@pytest.mark.parametrize(
    "value",
    [
        20.0, 20.5, 0.0, math.nan, math.inf, -math.inf, True, False, 0, -1, -2000,
        MAX_MINOR + 1, None, [], [2000], {"minor": 2000}, Decimal("20"), b"2000",
        "", "0", "-5", "+5", " 5", "5 ", "20.00", "2e3", "1_000", "0x10", "\u0661\u0662",
        "2000\n", str(MAX_MINOR + 1), "9" * 14,
    ],
    ids=repr,
)
def test_anything_but_a_positive_whole_number_of_minor_units_is_refused(value: Any) -> None:
    with pytest.raises(InvalidAmount) as caught:
        parse_minor(value)
    assert caught.value.code == "INVALID_AMOUNT"
    assert caught.value.http_status == 400


def test_refusal_names_the_field_that_was_wrong() -> None:
    with pytest.raises(InvalidAmount) as caught:
        parse_minor(1.5, field="limit")
    assert caught.value.extra == {"field": "limit"}
    assert "limit" in caught.value.message


def test_amount_errors_are_sim_errors_so_the_app_renders_them() -> None:
    assert issubclass(InvalidAmount, SimError)
    assert issubclass(InvalidCurrency, SimError)


def test_decimal_amount_in_a_json_body_arrives_as_a_float_and_is_refused() -> None:
    body = json.loads('{"amount": 20.00, "currency": "USD"}')
    assert isinstance(body["amount"], float)
    with pytest.raises(InvalidAmount):
        Money.parse(body["amount"], body["currency"])


def test_exponent_amount_in_a_json_body_is_refused() -> None:
    with pytest.raises(InvalidAmount):
        parse_minor(json.loads('{"amount": 1e3}')["amount"])


@pytest.mark.parametrize("code", ["USD", "EUR", "JPY", "SEK"])
def test_supported_currency_is_accepted(code: str) -> None:
    assert parse_currency(code) == code


@pytest.mark.parametrize(
    "value",
    ["usd", "Usd", "US", "USDT", "XXX", "ZZZ", "", " USD", "USD ", "USD\n", "U$D", None, 840,
     ["USD"], b"USD"],
    ids=repr,
)
def test_unsupported_or_malformed_currency_is_refused(value: Any) -> None:
    with pytest.raises(InvalidCurrency) as caught:
        parse_currency(value)
    assert caught.value.code == "INVALID_CURRENCY"
    assert caught.value.http_status == 400
    assert caught.value.extra == {"field": "currency"}


def test_parse_builds_money_from_wire_values() -> None:
    assert Money.parse(2000, "USD") == Money(2000, "USD")
    assert Money.parse("2000", "USD") == Money(2000, "USD")


def test_parse_checks_the_amount_and_the_currency() -> None:
    with pytest.raises(InvalidAmount):
        Money.parse(0, "USD")
    with pytest.raises(InvalidCurrency):
        Money.parse(2000, "usd")


def test_to_json_is_the_wire_shape_and_parses_back() -> None:
    money = Money(2000, "USD")
    assert money.to_json() == {"amount": 2000, "currency": "USD"}
    assert Money.parse(**money.to_json()) == money


def test_money_refuses_a_non_integer_minor() -> None:
    with pytest.raises(TypeError):
        Money(20.0, "USD")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(True, "USD")


def test_money_refuses_an_unsupported_currency() -> None:
    with pytest.raises(InvalidCurrency):
        Money(100, "ABC")


@pytest.mark.parametrize(
    ("money", "text"),
    [
        (Money(2000, "USD"), "USD 20.00"),
        (Money(100_000, "USD"), "USD 1,000.00"),
        (Money(5, "EUR"), "EUR 0.05"),
        (Money(0, "GBP"), "GBP 0.00"),
        (Money(-250, "USD"), "-USD 2.50"),
        (Money(1_500_000, "JPY"), "JPY 1,500,000"),
    ],
)
def test_display_groups_thousands_and_shows_the_currency_s_minor_digits(
    money: Money, text: str
) -> None:
    assert money.display() == text


def test_adding_and_subtracting_the_same_currency() -> None:
    assert Money(2000, "USD") + Money(500, "USD") == Money(2500, "USD")
    assert Money(2000, "USD") - Money(500, "USD") == Money(1500, "USD")


def test_subtraction_may_go_negative_for_balances() -> None:
    assert Money(500, "USD") - Money(2000, "USD") == Money(-1500, "USD")


def test_mixing_currencies_is_refused() -> None:
    with pytest.raises(ValueError, match="USD"):
        Money(2000, "USD") + Money(2000, "EUR")
    with pytest.raises(ValueError, match="EUR"):
        Money(2000, "USD") - Money(2000, "EUR")


def test_money_is_immutable_and_hashable() -> None:
    money = Money(2000, "USD")
    with pytest.raises(AttributeError):
        money.minor = 1  # type: ignore[misc]
    assert {money, Money(2000, "USD")} == {money}


@pytest.mark.parametrize("text", ["0020", "00", "01"])
def test_digit_strings_with_leading_zeros_are_refused(text: str) -> None:
    with pytest.raises(InvalidAmount):
        parse_minor(text)
