"""DatabaseClockStore: one manual time shared by every process that opens the sim's database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from simkit.clock import ClockState, ManualClock, system_now
from simkit.clock_store import DatabaseClockStore
from simkit.db import Database
from tests.unit.kernel_app import make_database

START = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)


def _two_clocks(tmp_path: Path) -> tuple[ManualClock, ManualClock]:
    """Two clocks over two engines on one file, as two gunicorn workers would have."""
    first_db = make_database(tmp_path)
    second_db = Database(first_db.url)
    return (ManualClock(START, DatabaseClockStore(first_db)),
            ManualClock(START, DatabaseClockStore(second_db)))


def test_empty_store_loads_nothing(tmp_path: Path) -> None:
    assert DatabaseClockStore(make_database(tmp_path)).load() is None


def test_saved_state_round_trips_with_microsecond_offset(tmp_path: Path) -> None:
    store = DatabaseClockStore(make_database(tmp_path))
    state = ClockState(frozen_at=None, offset=timedelta(days=-3, microseconds=7))
    store.save(state)
    assert store.load() == state


def test_frozen_instant_comes_back_as_aware_utc(tmp_path: Path) -> None:
    store = DatabaseClockStore(make_database(tmp_path))
    store.save(ClockState(frozen_at=START))
    loaded = store.load()
    assert loaded is not None
    assert loaded.frozen_at == START
    assert loaded.frozen_at.tzinfo is not None


def test_second_clock_keeps_the_state_the_first_one_stored(tmp_path: Path) -> None:
    first, _ = _two_clocks(tmp_path)
    first.advance(60)
    _, later = _two_clocks(tmp_path)
    assert later.now() == START + timedelta(seconds=60)


def test_advance_on_one_worker_is_seen_by_another(tmp_path: Path) -> None:
    first, second = _two_clocks(tmp_path)
    first.advance(301)
    assert second.now() == START + timedelta(seconds=301)


def test_set_on_one_worker_is_seen_by_another(tmp_path: Path) -> None:
    first, second = _two_clocks(tmp_path)
    target = datetime(2030, 1, 1, 6, 0, tzinfo=UTC)
    second.set(target)
    assert first.now() == target
    assert first.frozen


def test_resume_on_one_worker_lets_time_run_for_another(tmp_path: Path) -> None:
    first, second = _two_clocks(tmp_path)
    first.resume()
    assert not second.frozen
    assert START <= second.now() < START + timedelta(minutes=5)


def test_cleared_store_restarts_the_clock_from_real_time(tmp_path: Path) -> None:
    db = make_database(tmp_path)
    store = DatabaseClockStore(db)
    clock = ManualClock(START, store)
    store.clear()
    assert abs(clock.now() - system_now()) < timedelta(minutes=1)
    assert store.load() is not None
