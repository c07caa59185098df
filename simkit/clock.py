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
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

# The instants a controllable clock may be moved to. Every date the sims compute from "now"
# (token expiries, gaming days, retention windows) stays far inside what datetime and both
# databases can hold, so no endpoint fails for any position the control API allows.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)


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
    # The year is padded by hand: strftime's %Y writes year 1 as "1" on glibc.
    return (f"{moment.year:04d}" + moment.strftime("-%m-%dT%H:%M:%S.")
            + f"{moment.microsecond // 1000:03d}Z")


class ClockRangeError(ValueError):
    """A move would take a controllable clock outside `EARLIEST`..`LATEST`."""


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

    def update(self, change: Callable[[ClockState | None], ClockState]) -> ClockState:
        """Store `change(current state)` and return it, with no other update in between.

        This is what makes concurrent moves add up: twenty `advance(10)` calls from twenty
        threads or worker processes move the clock exactly 200 s. `change` may raise; then
        nothing is stored.
        """
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

    def update(self, change: Callable[[ClockState | None], ClockState]) -> ClockState:
        """Apply `change` under the store's lock."""
        with self._lock:
            self._state = change(self._state)
            return self._state


class ManualClock:
    """A clock that tests and the control API move; frozen at its start instant until resumed.

    Every move is one atomic update of the store (see `ClockStore.update`), so moves made at
    the same time through several threads or worker processes all take effect. Moves that
    would leave `EARLIEST`..`LATEST` raise `ClockRangeError` and change nothing.
    """

    def __init__(self, start: datetime | None = None, store: ClockStore | None = None) -> None:
        self._store: ClockStore = store if store is not None else MemoryClockStore()
        initial = ClockState(frozen_at=utc(start) if start else system_now())
        self._store.update(lambda state: initial if state is None else state)

    def _state(self) -> ClockState:
        state = self._store.load()
        if state is None:  # the store was emptied (a reset): start again from real time
            state = self._store.update(_or_real_time)
        return state

    def _move(self, change: Callable[[ClockState, datetime], ClockState]) -> datetime:
        """Apply `change` atomically, refusing results outside the clock's range."""
        real_now = system_now()

        def checked(state: ClockState | None) -> ClockState:
            moved = change(_or_real_time(state), real_now)
            if not EARLIEST <= moved.now(real_now) <= LATEST:
                raise ClockRangeError(
                    f"the clock must stay between {format_instant(EARLIEST)} and "
                    f"{format_instant(LATEST)}")
            return moved

        return self._store.update(checked).now(system_now())

    def now(self) -> datetime:
        """The manual time."""
        return self._state().now(system_now())

    @property
    def frozen(self) -> bool:
        """True while time stands still between moves."""
        return self._state().frozen_at is not None

    def advance(self, seconds: float) -> datetime:
        """Move time forward by `seconds` and return the new now."""
        return self._move(lambda state, real_now: state.advanced(seconds, real_now))

    def set(self, instant: datetime) -> datetime:
        """Freeze time at `instant` and return it."""
        return self._move(lambda state, _real_now: state.set_to(instant))

    def resume(self) -> datetime:
        """Let time run again from where it stands, at the speed of real time."""
        return self._move(lambda state, real_now: state.resumed(real_now))


def _or_real_time(state: ClockState | None) -> ClockState:
    """`state`, or a clock frozen at real time when nothing is stored."""
    return state if state is not None else ClockState(frozen_at=system_now())


def wait(clock: Clock, seconds: float) -> None:
    """Let a simulated delay (the demo bank's `Sleep`, a retry backoff) pass for its caller
    alone: `clock` is never moved.

    A controllable clock is shared by every payment, EGM and QR of a deployment (and by both
    sims in `scanpay serve`); a delay of one payment that moved it would expire every other QR
    on the floor. So the caller waits as the clock lets time pass: a frozen ManualClock lets
    none (only a move through the control API does), so the delay takes no time; a running
    clock, manual or system, passes real time, so the caller waits it out for real.
    """
    if seconds <= 0 or (isinstance(clock, ManualClock) and clock.frozen):
        return
    threading.Event().wait(seconds)
