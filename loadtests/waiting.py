"""The load tests' one poll with a deadline: the first answer, or None once time is up.

Locust workers may run on a machine that has only this folder (README.md, "Install"), so the
journeys import nothing from the project and cannot use `simkit.wait.poll_until`; this is the
same function for them. Its wait is `time.sleep`, looked up at each call: Locust's import has
gevent patch it, so a user waiting here lets the process's other users run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(
    check: Callable[[], T | None], *, timeout_s: float, interval_s: float
) -> T | None:
    """The first answer of `check` that is not None, or None once `timeout_s` has passed.

    `check` runs at least once, and once more at the deadline, so a short timeout never
    skips the last look.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found is not None:
            return found
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(interval_s, left))
