"""`poll_until` and `poll_until_async`, the one poll with a deadline: the first answer, or None
once time is up. Both are held to the same behaviour, and so is the load tests' own copy
(loadtests/waiting.py, which Locust workers use where the project is not installed); the
async one also lets the event loop's other tasks run while it waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from waiting import poll_until as load_poll_until  # loadtests/ is on pytest's path, as Locust's

from simkit.wait import poll_until, poll_until_async

Poll = Callable[..., "str | None"]


def _poll_async(check: Callable[[], str | None], **kwargs: float) -> str | None:
    """`poll_until_async` run to its end, with `check` as a coroutine function."""
    async def look() -> str | None:
        return check()

    return asyncio.run(poll_until_async(look, **kwargs))


VARIANTS = pytest.mark.parametrize("poll", [poll_until, _poll_async, load_poll_until],
                                   ids=["sync", "async", "loadtests"])


def _answers(*replies: str | None) -> tuple[Callable[[], str | None], list[int]]:
    """A check that gives `replies` in turn (then None), and the count of its calls."""
    calls = [0]

    def check() -> str | None:
        calls[0] += 1
        return replies[calls[0] - 1] if calls[0] <= len(replies) else None

    return check, calls


@VARIANTS
def test_the_first_answer_that_is_not_none_is_returned_at_once(poll: Poll) -> None:
    check, calls = _answers(None, None, "ready", "later")
    assert poll(check, timeout_s=5, interval_s=0) == "ready"
    assert calls == [3]


@VARIANTS
def test_a_falsy_answer_other_than_none_counts_as_found(poll: Poll) -> None:
    check, _ = _answers(None, "")
    assert poll(check, timeout_s=5, interval_s=0) == ""


@VARIANTS
def test_no_answer_within_the_timeout_is_none(poll: Poll) -> None:
    check, calls = _answers()
    assert poll(check, timeout_s=0.05, interval_s=0.01) is None
    assert calls[0] >= 2


@VARIANTS
def test_a_timeout_of_zero_still_looks_once(poll: Poll) -> None:
    check, calls = _answers("ready")
    assert poll(check, timeout_s=0, interval_s=0.005) == "ready"
    assert calls == [1]


@VARIANTS
def test_the_last_look_is_at_the_deadline_not_before(poll: Poll) -> None:
    """An interval longer than the timeout still ends with a look at the deadline."""
    check, calls = _answers(None, "ready")
    assert poll(check, timeout_s=0.02, interval_s=10) == "ready"
    assert calls == [2]


def test_the_async_wait_lets_the_loops_other_tasks_run() -> None:
    """What the check waits for is done by another task of the same loop: a wait that blocked
    the loop (a thread's sleep) would never see it."""
    async def scenario() -> str | None:
        done = asyncio.Event()

        async def worker() -> None:
            await asyncio.sleep(0.01)
            done.set()

        async def finished() -> str | None:
            return "done" if done.is_set() else None

        task = asyncio.create_task(worker())
        found = await poll_until_async(finished, timeout_s=5, interval_s=0.005)
        await task
        return found

    assert asyncio.run(scenario()) == "done"
