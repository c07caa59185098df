"""The Demo Bank: sandbox keyphrases force named failures, `Sleep` and `TimeoutError` delay
without moving the clock, and the UBAI follows the bank account."""

from __future__ import annotations

import pytest

from sim_trustly.microsite import demo_bank
from simkit.clock import ManualClock
from simkit.money import MinorUnits
from tests.conftest import START


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=START)


def elapsed(clock: ManualClock) -> float:
    return (clock.now() - START).total_seconds()


@pytest.mark.parametrize(("password", "reason"), [
    ("NotEnoughFunds", "BANK_NOT_ENOUGH_FUNDS"),
    ("notenoughfunds", "BANK_NOT_ENOUGH_FUNDS"),
    ("xx-LOGINERROR-xx", "BANK_LOGIN_ERROR"),
    ("AccountLocked", "BANK_ACCOUNT_LOCKED"),
    ("uNaVaIlAbLe", "BANK_UNAVAILABLE"),
    ("TimeoutError", "BANK_TIMEOUT"),
])
def test_each_keyphrase_forces_its_failure(
    clock: ManualClock, password: str, reason: str
) -> None:
    result = demo_bank.authorize("alice", password, MinorUnits(2000), clock)
    assert (result.ok, result.reason) == (False, reason)


def test_no_keyphrase_moves_the_clock_not_even_the_timeout(clock: ManualClock) -> None:
    demo_bank.authorize("alice", "NotEnoughFunds", MinorUnits(2000), clock)
    demo_bank.authorize("alice", "TimeoutError", MinorUnits(2000), clock)
    assert elapsed(clock) == 0


@pytest.mark.parametrize(("username", "password"), [
    ("alice", "pw"), ("Bob", "Not Enough Funds"), ("x", "anything else"),
])
def test_any_other_login_is_approved(clock: ManualClock, username: str, password: str) -> None:
    result = demo_bank.authorize(username, password, MinorUnits(10**9), clock)
    assert result.ok and result.reason is None


@pytest.mark.parametrize("username", ["Sleep", "SLEEP", "sleep"])
def test_sleep_approves_without_moving_the_shared_clock(
    clock: ManualClock, username: str
) -> None:
    assert demo_bank.authorize(username, "7", MinorUnits(2000), clock).ok
    assert elapsed(clock) == 0


@pytest.mark.parametrize("password", ["601", "-1", "1.5", "soon", "", "٣"])
def test_sleep_with_an_unusable_delay_is_a_login_error(clock: ManualClock, password: str) -> None:
    result = demo_bank.authorize("Sleep", password, MinorUnits(2000), clock)
    assert (result.ok, result.reason) == (False, "BANK_LOGIN_ERROR")
    assert elapsed(clock) == 0


def test_sleep_up_to_the_bound_is_accepted(clock: ManualClock) -> None:
    assert demo_bank.authorize("Sleep", str(demo_bank.MAX_SLEEP_S), MinorUnits(2000), clock).ok
    assert elapsed(clock) == 0


def test_the_ubai_is_the_same_for_the_same_account_and_differs_between_accounts(
    clock: ManualClock,
) -> None:
    first = demo_bank.authorize("Alice", "pw", MinorUnits(1), clock)
    again = demo_bank.authorize("alice", "other-password", MinorUnits(1), clock)
    other = demo_bank.authorize("bob", "pw", MinorUnits(1), clock)
    assert first.ubai == again.ubai == demo_bank.ubai_for("ALICE")
    assert first.account_id == again.account_id != other.account_id
    assert other.ubai != first.ubai


def test_the_ubai_fits_the_cms_identifier_shape_and_hides_the_username() -> None:
    ubai = demo_bank.ubai_for("alice@example.com")
    assert ubai.startswith("ubai-") and len(ubai) == 37
    assert ubai[5:].isalnum() and "alice" not in ubai
    assert demo_bank.ubai_for("alice@example.com") == ubai  # stable across calls and processes


def test_a_refused_login_still_names_the_account(clock: ManualClock) -> None:
    result = demo_bank.authorize("carol", "AccountLocked", MinorUnits(1), clock)
    assert result.account_id == demo_bank.account_for("carol")


def test_void_records_which_payment_of_which_account() -> None:
    assert demo_bank.void("acct-1", "pay-1") == {
        "account": "acct-1", "paymentId": "pay-1", "voided": True}
