"""Time as an injected dependency.

Every "now" in the sims comes from a `Clock`. Production runs on `SystemClock`; tests and the
harness run on `ManualClock`, whose state (frozen instant or offset from real time) lives in a
`ClockStore`. The store can be the database, so every worker process of a sim sees one time,
which is what lets `POST /_sim/clock` move time for a gunicorn server with many workers.

This is the only module allowed to read the machine's clock (see the ruff banned-api rule).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol


def utc(value: datetime) -> datetime:
    """Return `value` as an aware UTC datetime; naive values are taken to be UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_instant(text: str) -> datetime:
    """Parse an ISO-8601 instant (a trailing `Z` is accepted); naive means UTC."""
    return utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))


def format_instant(value: datetime) -> str:
    """Format an instant as ISO-8601 UTC with milliseconds and a `Z`, e.g. `...T21:10:00.000Z`."""
    moment = utc(value)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Clock(Protocol):
    """Where every sim reads the current time."""

    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        """The machine's current UTC time."""
        return datetime.now(UTC)


def system_now() -> datetime:
    """The machine's UTC time, for code that must measure real time (timeouts, latency)."""
    return datetime.now(UTC)


def monotonic() -> float:
    """Monotonic seconds, for measuring real latencies and real deadlines."""
    return time.monotonic()


@dataclass(frozen=True)
class ClockState:
    """A manual clock's state: frozen at an instant, or running at an offset from real time."""

    frozen_at: datetime | None
    offset: timedelta = timedelta(0)

    def now(self, real_now: datetime) -> datetime:
        """The time this state gives when real time is `real_now`."""
        if self.frozen_at is not None:
            return self.frozen_at
        return real_now + self.offset

    def advanced(self, seconds: float, real_now: datetime) -> ClockState:
        """This state moved forward by `seconds` (negative moves it back)."""
        delta = timedelta(seconds=seconds)
        if self.frozen_at is not None:
            return replace(self, frozen_at=self.frozen_at + delta)
        return replace(self, offset=self.offset + delta)

    def set_to(self, instant: datetime) -> ClockState:
        """A state frozen at `instant`."""
        return ClockState(frozen_at=utc(instant), offset=timedelta(0))

    def resumed(self, real_now: datetime) -> ClockState:
        """A running state that continues from the current time at the speed of real time."""
        return ClockState(frozen_at=None, offset=self.now(real_now) - real_now)


class ClockStore(Protocol):
    """Keeps a `ManualClock`'s state where every process that shares the clock can read it."""

    def load(self) -> ClockState | None:
        """The stored state, or None when nothing has been stored yet."""
        ...

    def save(self, state: ClockState) -> None:
        """Replace the stored state."""
        ...


class MemoryClockStore:
    """A store for one process (unit tests, embedded sims)."""

    def __init__(self) -> None:
        self._state: ClockState | None = None
        self._lock = threading.Lock()

    def load(self) -> ClockState | None:
        """The state kept in memory."""
        with self._lock:
            return self._state

    def save(self, state: ClockState) -> None:
        """Keep `state` in memory."""
        with self._lock:
            self._state = state


class ManualClock:
    """A clock that tests and the control API move; frozen at its start instant until resumed.

    State changes are read-modify-write on the store; the control API is the only writer and
    callers serialize through it, so no cross-process lock is needed here.
    """

    def __init__(self, start: datetime | None = None, store: ClockStore | None = None) -> None:
        self._store: ClockStore = store if store is not None else MemoryClockStore()
        if self._store.load() is None:
            self._store.save(ClockState(frozen_at=utc(start) if start else system_now()))

    def _state(self) -> ClockState:
        state = self._store.load()
        if state is None:  # the store was emptied (a reset): start again from real time
            state = ClockState(frozen_at=system_now())
            self._store.save(state)
        return state

    def now(self) -> datetime:
        """The manual time."""
        return self._state().now(system_now())

    @property
    def frozen(self) -> bool:
        """True while time stands still between moves."""
        return self._state().frozen_at is not None

    def advance(self, seconds: float) -> datetime:
        """Move time forward by `seconds` and return the new now."""
        self._store.save(self._state().advanced(seconds, system_now()))
        return self.now()

    def set(self, instant: datetime) -> datetime:
        """Freeze time at `instant` and return it."""
        self._store.save(self._state().set_to(instant))
        return self.now()

    def resume(self) -> datetime:
        """Let time run again from where it stands, at the speed of real time."""
        self._store.save(self._state().resumed(system_now()))
        return self.now()


def wait(clock: Clock, seconds: float) -> None:
    """Let `seconds` pass on `clock`: a ManualClock moves forward at once, a real clock waits.

    For simulated delays (a slow bank login, a retry backoff) so that tests on a ManualClock
    never wait in real time.
    """
    if seconds <= 0:
        return
    if isinstance(clock, ManualClock):
        clock.advance(seconds)
    else:
        threading.Event().wait(seconds)
