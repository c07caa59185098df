"""Plain-text pieces shared by the report writers (console, JUnit XML and HTML).

Kept apart from the writers so the formats word a check, a sequence line, a duration or the
verdict the same way, and so the rule for unprintable characters is written once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from harness.certify.results import Check, Exchange, RunResult, ScenarioResult
from harness.sequence.faults import outcome_text

# Everything XML 1.0 forbids (C0 controls other than tab, LF and CR; lone surrogates; U+FFFE
# and U+FFFF), plus DEL and the C1 controls, which XML allows but no reader wants to see raw.
_UNPRINTABLE = re.compile(
    "[^\t\n\r\u0020-\u007e\u00a0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean_text(text: str) -> str:
    """`text` with every character XML 1.0 forbids (and other controls) shown as an escape.

    A journal excerpt or an error can hold any byte the target sent back. Replacing such a
    character with a visible `\\x07` (rather than dropping it) keeps the XML and HTML valid
    while still telling the reader that the body held something odd.
    """
    return _UNPRINTABLE.sub(_visible, text)


def format_seconds(seconds: float) -> str:
    """A duration for people: `850 ms`, `3.20 s`, `2 min 05 s`."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def exchange_line(exchange: Exchange) -> str:
    """One sequence line as text, e.g. `2. Phone -> Trustly  GET /api/v1/scan/x  200 ACTIVE  3 ms`.

    Worded like `harness.sequence.messages.Message.text` (what `scanpay flow` prints), with
    nested calls indented by their depth, and a fault the target injected worded after the outcome
    (`201 APPLIED, response dropped by fault (apply_then_drop, rule 3): the caller saw no
    answer`).
    """
    who = f"{exchange.n}. " + "   " * exchange.depth + f"{exchange.sender} -> {exchange.receiver}"
    parts = [who]
    if exchange.kind != "response":
        parts.append(f"{exchange.method} {exchange.path}")
    if exchange.kind != "request":
        outcome = outcome_text(exchange.status, exchange.note, exchange.fault)
        if exchange.latency_ms is not None:
            outcome = f"{outcome}  {exchange.latency_ms} ms".strip()
        if outcome:
            parts.append(outcome)
    return clean_text("  ".join(parts))


def sequence_text(sequence: Iterable[Exchange]) -> str:
    """The whole observed sequence, one line per exchange."""
    return "\n".join(exchange_line(exchange) for exchange in sequence)


def check_text(check: Check) -> str:
    """A failed (or passed) check as `description: expected X, observed Y`."""
    mark = "ok" if check.passed else "FAILED"
    text = f"[{mark}] {check.description}"
    if check.expected or check.observed:
        text += f"\n    expected: {check.expected}\n    observed: {check.observed}"
    return clean_text(text)


def failure_text(result: ScenarioResult) -> str:
    """Every failed check of a scenario (its reason when none is recorded)."""
    failed = [check_text(check) for check in result.checks if not check.passed]
    return "\n".join(failed) if failed else clean_text(result.reason)


def one_line(text: str, limit: int = 200) -> str:
    """`text` squeezed onto one line and cut at `limit` characters (for attributes, tables)."""
    squeezed = " ".join(clean_text(text).split())
    return squeezed if len(squeezed) <= limit else squeezed[: limit - 1] + "…"


def verdict_text(run: RunResult) -> str:
    """What the verdict means for this run, and the exit code it gives."""
    counts = run.counts()
    if run.verdict == "ERROR":
        meaning = run.diagnosis
    elif run.verdict == "FAILED":
        meaning = (f"{counts['failed']} scenario(s) failed and {counts['error']} could not "
                   "run to the end (error); the reasons above say why.")
    elif run.verdict == "INCOMPLETE" and not counts["skipped"]:
        meaning = "no scenario ran, so nothing was tested."
    elif run.verdict == "INCOMPLETE":
        meaning = (f"nothing failed, but {counts['skipped']} scenario(s) were skipped: what "
                   "they check was not tested, so this is not a pass. Offer the hooks they "
                   "need (see each reason) for a complete run.")
    else:
        meaning = f"all {len(run.scenarios)} scenarios ran and passed."
    return f"Verdict: {run.verdict} (exit code {run.exit_code}): {meaning}"
