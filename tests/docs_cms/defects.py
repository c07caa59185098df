"""The defects this CMS can be started with, so tests can prove certify catches each one.

A defect is chosen at start-up (`--defect NAME`, or `create_app(defect=NAME)`); without one the
CMS is correct. Each name is a mistake a real CMS could ship, and what it costs in money.
"""

from __future__ import annotations

DEFECTS: dict[str, str] = {
    "replay-outside-lock":
        "looks the transactionId up before taking the write lock: N identical concurrent "
        "fundings are all applied",
    "many-fundings-per-qr":
        "never marks a QR token used: a second transactionId on a paid QR is credited again",
    "no-qr-replacement":
        "keeps showing a QR after a player paid with it: the next player scans a spent code",
    "slow-answer":
        "records the decision only after a slow EGM acknowledgement, past TPAS's read "
        "timeout: the status inquiry says never decided and TPAS's retry is credited again",
    "accept-expired-qr":
        "never checks a QR token's expiry: a token long expired still credits",
    "no-daily-limit":
        "trusts TPAS's pre-check and never enforces the daily limit itself",
}

# How long the slow-answer defect keeps the decision unrecorded (seconds); the test's target
# sets TPAS's read timeout below it.
SLOW_ANSWER_S = 2.0


def check(name: str | None) -> str | None:
    """`name` when it is a known defect (or None), else ValueError naming the known ones."""
    if name is not None and name not in DEFECTS:
        raise ValueError(f"unknown defect {name!r}; known: {', '.join(sorted(DEFECTS))}")
    return name
