"""`poll_until`, the one poll with a deadline: the first answer, or None once time is up."""

from __future__ import annotations

from collections.abc import Callable

from simkit.wait import poll_until


def _answers(*replies: str | None) -> tuple[Callable[[], str | None], list[int]]:
    """A check that gives `replies` in turn (then None), and the count of its calls."""
    calls = [0]

    def check() -> str | None:
        calls[0] += 1
        return replies[calls[0] - 1] if calls[0] <= len(replies) else None

    return check, calls


def test_the_first_answer_that_is_not_none_is_returned_at_once() -> None:
    check, calls = _answers(None, None, "ready", "later")
    assert poll_until(check, timeout_s=5, interval_s=0) == "ready"
    assert calls == [3]


def test_a_falsy_answer_other_than_none_counts_as_found() -> None:
    check, _ = _answers(None, "")
    assert poll_until(check, timeout_s=5, interval_s=0) == ""


def test_no_answer_within_the_timeout_is_none() -> None:
    check, calls = _answers()
    assert poll_until(check, timeout_s=0.05, interval_s=0.01) is None
    assert calls[0] >= 2


def test_a_timeout_of_zero_still_looks_once() -> None:
    check, calls = _answers("ready")
    assert poll_until(check, timeout_s=0) == "ready"
    assert calls == [1]


def test_the_last_look_is_at_the_deadline_not_before() -> None:
    """An interval longer than the timeout still ends with a look at the deadline."""
    check, calls = _answers(None, "ready")
    assert poll_until(check, timeout_s=0.02, interval_s=10) == "ready"
    assert calls == [2]
