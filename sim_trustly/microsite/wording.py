"""What the microsite says to a person: money as people read it, outcomes in plain words."""

from __future__ import annotations

from simkit.money import MinorUnits, Money

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}

# Reasons a payment can end without credit, as a player would want to hear them. Codes not
# listed fall back on a humanised code, so a new reason never breaks the page.
REASONS: dict[str, str] = {
    "EGM_NOT_FOUND": "The casino does not know this machine.",
    "EGM_BUSY": "The machine is in a game. Finish the game, then scan again.",
    "EGM_DOOR_OPEN": "The machine's door is open. Ask an attendant, then scan again.",
    "EGM_TILT": "The machine is in tilt. Ask an attendant for help.",
    "EGM_OFFLINE": "The machine is offline right now.",
    "DAILY_LIMIT_EXCEEDED": "This would take you over your daily funding limit at this casino.",
    "CREDIT_LIMIT_EXCEEDED": "This would take the machine over its credit limit.",
    "QR_TOKEN_MISMATCH": "The casino did not show this QR code on that machine.",
    "QR_TOKEN_USED": "This QR code has already paid for a top-up; scan the machine's new code.",
    "QR_TOKEN_EXPIRED": "This QR code expired long ago; scan the machine's current code.",
    "INVALID_AMOUNT": "The casino does not accept this amount.",
    "LIMIT_CHECK_FAILED": "We could not check your daily limit with the casino.",
    "CMS_UNAVAILABLE": "We could not reach the casino.",
    "BANK_NOT_ENOUGH_FUNDS": "Your bank account does not have enough money for this amount.",
    "BANK_LOGIN_ERROR": "Your bank did not accept that login.",
    "BANK_ACCOUNT_LOCKED": "Your bank account is locked.",
    "BANK_UNAVAILABLE": "Your bank is not available right now.",
    "BANK_TIMEOUT": "Your bank took too long to answer.",
}


def money_text(minor: MinorUnits, currency: str) -> str:
    """Money as a player reads it: `$20.00`, or `SEK 100.00` for a currency without a symbol."""
    text = Money(minor, currency).display()
    symbol = SYMBOLS.get(currency)
    return text.replace(f"{currency} ", symbol, 1) if symbol else text


def reason_text(reason: str | None) -> str:
    """A reason code in plain words (`EGM_BUSY` -> "The machine is in a game...")."""
    if not reason:
        return "Something went wrong."
    return REASONS.get(reason, reason.replace("_", " ").capitalize() + ".")


def outcome_headline(status: str, amount: str, egm_id: str) -> str:
    """The one line that says how a payment ended, e.g. "Credited $20.00 to EGM-001"."""
    if status == "CREDITED":
        return f"Credited {amount} to {egm_id}"
    if status == "REJECTED_VOIDED":
        return f"The casino declined {amount} for {egm_id}"
    if status == "FAILED_VOIDED":
        return f"Payment of {amount} did not go through"
    return f"Sending {amount} to {egm_id}…"
