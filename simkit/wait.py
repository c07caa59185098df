"""The one way to wait for something to become true: poll with a deadline, never a bare sleep.

`poll_until` waits in a thread, `poll_until_async` in an event loop (where a thread's sleep
would stop every other task); both look the same way: at once, every `interval_s`, and once
more at the deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from simkit.clock import monotonic

T = TypeVar("T")


def poll_until(
    check: Callable[[], T | None], *, timeout_s: float, interval_s: float = 0.005
) -> T | None:
    """The first answer of `check` that is not None, or None once `timeout_s` has passed.

    `check` runs at least once, and once more at the deadline, so a short timeout never
    skips the last look.
    """
    deadline = monotonic() + timeout_s
    while True:
        found = check()
        if found is not None:
            return found
        left = deadline - monotonic()
        if left <= 0:
            return None
        time.sleep(min(interval_s, left))


async def poll_until_async(
    check: Callable[[], Awaitable[T | None]], *, timeout_s: float, interval_s: float = 0.005
) -> T | None:
    """`poll_until` for a coroutine: the first answer of `await check()` that is not None, or
    None once `timeout_s` has passed; the wait between looks lets the loop's other tasks run.

    `check` runs at least once, and once more at the deadline.
    """
    deadline = monotonic() + timeout_s
    while True:
        found = await check()
        if found is not None:
            return found
        left = deadline - monotonic()
        if left <= 0:
            return None
        await asyncio.sleep(min(interval_s, left))
