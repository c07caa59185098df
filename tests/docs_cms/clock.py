"""The CMS's one clock, and the instants and gaming days read from it.

Every decision (token expiry, QR expiry and rotation, the gaming day, `decidedAt`) reads this
clock, and the `clock` hook moves it, so the harness can reach expiry without anyone sleeping.
It runs with the system clock plus an offset that only the hook changes.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

CASINO_ZONE = ZoneInfo("America/Los_Angeles")
GAMING_DAY_STARTS = timedelta(hours=6)


class OffsetClock:
    """Real UTC time moved forward by every `advance` (or jumped by `set`)."""

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The instant the CMS decides at."""
        return datetime.now(UTC) + self._offset  # noqa: TID251 - this IS the CMS's clock

    def advance(self, seconds: float) -> datetime:
        """Move forward; concurrent moves add up."""
        with self._lock:
            self._offset += timedelta(seconds=seconds)
        return self.now()

    def set(self, instant: datetime) -> datetime:
        """Jump to `instant` (re-aligning between runs; the harness never does this)."""
        with self._lock:
            self._offset = instant - datetime.now(UTC)  # noqa: TID251
        return self.now()


def iso(instant: datetime) -> str:
    """UTC with milliseconds and Z, the form every instant of the API takes."""
    utc = instant.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_instant(value: object) -> datetime:
    """An ISO-8601 instant with an offset, or epoch milliseconds (Trustly's `expiresAt` option)."""
    if isinstance(value, bool):
        raise ValueError("not an instant")
    if isinstance(value, int):
        return datetime.fromtimestamp(value / 1000, UTC)
    if not isinstance(value, str):
        raise ValueError("not an instant")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("an instant needs its offset")
    return parsed.astimezone(UTC)


def gaming_day(instant: datetime) -> date:
    """The casino's gaming day: it starts at 06:00 Los Angeles wall time."""
    return (instant.astimezone(CASINO_ZONE) - GAMING_DAY_STARTS).date()
