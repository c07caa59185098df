"""The one way to wait for something to become true: poll with a deadline, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
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
