"""The planted defects, by the names `SCANPAY_BROKEN_DEFECTS` lists them under."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

ENV_VAR = "SCANPAY_BROKEN_DEFECTS"


class Defect(StrEnum):
    """One way a partner CMS can be wrong; each is switched on independently."""

    NO_IDEMPOTENCY = "no-idempotency"  # a replayed transactionId credits again
    LIMIT_NO_LOCK = "limit-no-lock"  # the daily-limit check reads usage outside the lock
    IGNORES_ROTATION = "ignores-rotation"  # a QR is replaced only once it has expired
    WRONG_ERROR_CODES = "wrong-error-codes"  # EGM-state refusals all say FUNDING_REJECTED
    CREDITS_OFFLINE_EGM = "credits-offline-egm"  # an OFFLINE EGM takes credit
    # The transactionId is looked up before the unit of work takes its lock, never inside it:
    # identical fundings arriving together all miss each other and are all credited.
    REPLAY_OUTSIDE_LOCK = "replay-outside-lock"
    # Credits at once but answers (and stores the outcome under the transactionId) only
    # SLOW_ANSWER_S later: TPAS's retry after its read timeout is credited again.
    SLOW_ANSWER = "slow-answer"
    # A QR token pays any number of fundings (the product claims it for one).
    MANY_FUNDINGS_PER_QR = "many-fundings-per-qr"
    # A QR token is funded however long after its expiry (the product allows a grace).
    ACCEPTS_EXPIRED_QR = "accepts-expired-qr"
    # A QR whose token paid a funding stays due only at its rotation: the screen shows none.
    NO_REPLACEMENT_AFTER_USE = "no-replacement-after-use"


# The defects that live in the funding unit of work (the others are elsewhere).
FUNDING_DEFECTS = frozenset({Defect.NO_IDEMPOTENCY, Defect.LIMIT_NO_LOCK,
                             Defect.WRONG_ERROR_CODES, Defect.CREDITS_OFFLINE_EGM,
                             Defect.REPLAY_OUTSIDE_LOCK, Defect.SLOW_ANSWER,
                             Defect.MANY_FUNDINGS_PER_QR, Defect.ACCEPTS_EXPIRED_QR})


def parse_defects(text: str | Iterable[str]) -> frozenset[Defect]:
    """`"no-idempotency, limit-no-lock"` (or a list of names) as defects; ValueError on a typo.

    A typo must not quietly give a correct CMS: the acceptance test would then "prove" that a
    defect goes unnoticed.
    """
    names = text.split(",") if isinstance(text, str) else list(text)
    wanted = {name.strip() for name in names if name.strip()}
    known = {defect.value for defect in Defect}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(f"unknown defect(s) {unknown}; known: {sorted(known)}")
    return frozenset(Defect(name) for name in wanted)


def defects_from_env(environ: Mapping[str, str]) -> frozenset[Defect]:
    """The defects named in `SCANPAY_BROKEN_DEFECTS` (none when it is unset or empty)."""
    return parse_defects(environ.get(ENV_VAR, ""))
