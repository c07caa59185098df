"""The Demo Bank: the player's bank login and approval, with the sandbox's forced outcomes.

Trustly's sandbox bank lets a tester force an outcome with a keyphrase in the password
(case-insensitive): `NotEnoughFunds`, `LoginError`, `AccountLocked`, `Unavailable`,
`TimeoutError`; username `Sleep` with a number of seconds as the password delays the login.
The sim simplifies each keyphrase to one named failure:

| password contains | reason                  | notes                                         |
|-------------------|-------------------------|-----------------------------------------------|
| NotEnoughFunds    | BANK_NOT_ENOUGH_FUNDS   |                                               |
| LoginError        | BANK_LOGIN_ERROR        |                                               |
| AccountLocked     | BANK_ACCOUNT_LOCKED     |                                               |
| Unavailable       | BANK_UNAVAILABLE        |                                               |
| TimeoutError      | BANK_TIMEOUT            | after a simulated wait of 60 s                |

`Sleep` waits the given whole seconds (0-600) and then approves; any other password for
`Sleep` is refused as BANK_LOGIN_ERROR. Every other login approves. Waits go through
`simkit.clock.wait`: they delay this payment alone and never move the shared clock (while a
controllable clock is frozen they take no time; while a clock runs they take real time).

The account and the UBAI are derived from the username alone (case-folded), so the same
"bank account" gets the same UBAI on every payment and the CMS's daily limit follows it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from simkit.clock import Clock, wait
from simkit.money import MinorUnits

KEYPHRASES: tuple[tuple[str, str], ...] = (
    ("notenoughfunds", "BANK_NOT_ENOUGH_FUNDS"),
    ("loginerror", "BANK_LOGIN_ERROR"),
    ("accountlocked", "BANK_ACCOUNT_LOCKED"),
    ("unavailable", "BANK_UNAVAILABLE"),
    ("timeouterror", "BANK_TIMEOUT"),
)
TIMEOUT_WAIT_S = 60
MAX_SLEEP_S = 600
SLEEP_USER = "sleep"


@dataclass(frozen=True)
class BankResult:
    """The bank's answer: approved (with the account and its UBAI) or refused with a reason."""

    ok: bool
    account_id: str
    ubai: str
    reason: str | None = None


def account_for(username: str) -> str:
    """The demo account a username logs into (stable, and no raw username is stored)."""
    return "acct-" + _digest("demo-bank-account:", username)[:24]


def ubai_for(username: str) -> str:
    """The UBAI TPAS sends the CMS for this demo account: the same account, the same UBAI."""
    return "ubai-" + _digest("demo-bank:", username)[:32]


def _digest(prefix: str, username: str) -> str:
    return hashlib.sha256((prefix + username.casefold()).encode("utf-8")).hexdigest()


def _keyphrase_reason(password: str) -> str | None:
    folded = password.casefold()
    for phrase, reason in KEYPHRASES:
        if phrase in folded:
            return reason
    return None


def _sleep_seconds(password: str) -> int | None:
    text = password.strip()
    if not text.isascii() or not text.isdigit() or int(text) > MAX_SLEEP_S:
        return None
    return int(text)


def authorize(username: str, password: str, amount: MinorUnits, clock: Clock) -> BankResult:
    """Log in and approve a payment of `amount`, or refuse it as the keyphrase asks.

    Delays go through `simkit.clock.wait`: on a running clock the login really waits, and on a
    frozen controllable clock the delay passes without moving the time every payment sees.
    """
    del amount  # the demo bank has unlimited funds unless told otherwise
    account, ubai = account_for(username), ubai_for(username)
    if username.casefold() == SLEEP_USER:
        seconds = _sleep_seconds(password)
        if seconds is None:
            return BankResult(False, account, ubai, "BANK_LOGIN_ERROR")
        wait(clock, seconds)
        return BankResult(True, account, ubai)
    reason = _keyphrase_reason(password)
    if reason == "BANK_TIMEOUT":
        wait(clock, TIMEOUT_WAIT_S)
    return BankResult(reason is None, account, ubai, reason)


def void(account_id: str, payment_id: str) -> dict[str, Any]:
    """Void the bank payment of `payment_id`: the money never leaves the player's account.

    The demo bank keeps no balances, so a void is only recorded: the caller stores the
    returned detail as the payment's BANK_VOIDED event.
    """
    return {"account": account_id, "paymentId": payment_id, "voided": True}
