"""The live line while a run goes: users, requests per second, failures and p95.

On a terminal one line is rewritten in place; otherwise (CI logs, a pipe) a plain line is
printed at each interval, so a log shows the run's course without control characters.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import gevent


def status_line(environment: Any, elapsed_s: float) -> str:
    """`12s  users 8  req/s 41.5  failures 0 (0.00%)  p95 38 ms` of the run so far."""
    total = environment.stats.total
    p95 = total.get_current_response_time_percentile(0.95) or 0
    share = total.num_failures / total.num_requests if total.num_requests else 0.0
    return (f"{elapsed_s:4.0f}s  users {environment.runner.user_count}  "
            f"req/s {total.current_rps:.1f}  failures {total.num_failures} ({share:.2%})  "
            f"p95 {p95:g} ms")


def start_live_line(environment: Any, interval_s: float,
                    out: TextIO | None = None) -> gevent.Greenlet | None:
    """Print the status line every `interval_s` until the returned greenlet is killed."""
    if interval_s <= 0:
        return None
    stream = out or sys.stderr
    tty = stream.isatty()
    started = time.monotonic()

    def run() -> None:
        try:
            while True:
                gevent.sleep(interval_s)
                line = status_line(environment, time.monotonic() - started)
                stream.write(f"\r\x1b[2K{line}" if tty else f"{line}\n")
                stream.flush()
        finally:
            if tty:
                stream.write("\n")
                stream.flush()

    return gevent.spawn(run)
