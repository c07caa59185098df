"""How a sequence line words an injected fault: what the fault did, and what the caller saw.

A sim journals the label of the fault that fired on a request in the entry's `fault`
(`simkit.faults`: `apply_then_drop (rule 3)`, `status 503 (rule 4)`, `delay 2000ms (rule 5)`).
The entry keeps the status the app answered, which for a dropped exchange is not what the
caller got: a funding applied and then dropped is journaled `201 APPLIED`, yet TPAS heard
nothing. Every view of a sequence (`scanpay flow`, report.json, JUnit, report.html) words the
fault with these functions, so none of them shows such an exchange as a normal answer.

A partner CMS may journal its own labels (`apply_then_drop`, or any text); the first word is
taken as the action, and an unknown one is still shown, only worded generically.
"""

from __future__ import annotations

import re

# Actions whose caller never received the journaled answer.
NO_ANSWER_ACTIONS = frozenset({"apply_then_drop", "drop"})
_RULE_SUFFIX = re.compile(r"^(?P<detail>.*?\S)\s*\((?P<rule>rule [^()]*)\)$")


def fault_action(label: str) -> str:
    """The fault's action: the first word of its label (`apply_then_drop (rule 3)`)."""
    words = label.split(maxsplit=1)
    return words[0] if words else ""


def fault_tag(label: str) -> str:
    """The label as a parenthesis reads it: `apply_then_drop (rule 3)` -> `apply_then_drop,
    rule 3`; a label without a rule number is kept as it is."""
    label = " ".join(label.split())
    match = _RULE_SUFFIX.match(label)
    return f"{match['detail']}, {match['rule']}" if match else label


def caller_saw_no_answer(label: str | None) -> bool:
    """True when the fault kept the journaled answer from the caller (drop, apply_then_drop)."""
    return bool(label) and fault_action(label or "") in NO_ANSWER_ACTIONS


def fault_effect(label: str) -> str:
    """What the fault did to the exchange, worded for a sequence line, e.g.
    `response dropped by fault (apply_then_drop, rule 3): the caller saw no answer`."""
    tag = fault_tag(label)
    action = fault_action(label)
    if action == "apply_then_drop":
        return f"response dropped by fault ({tag}): the caller saw no answer"
    if action == "drop":
        return (f"connection dropped by fault ({tag}) before the request was handled: "
                "the caller saw no answer")
    if action == "status":
        return f"answer injected by fault ({tag}): the request was not handled"
    if action == "delay":
        return f"delayed by fault ({tag})"
    return f"affected by fault ({tag})"


def outcome_text(status: int | None, note: str, fault: str | None) -> str:
    """`201 APPLIED`, or with a fault `201 APPLIED, response dropped by fault (...): ...`:
    the status and outcome word of a line, then what a fault did to it (latency not included)."""
    head = " ".join(part for part in ("" if status is None else str(status), note) if part)
    if not fault:
        return head
    effect = fault_effect(fault)
    return f"{head}, {effect}" if head else effect
