"""The gaming day: local time in the casino's zone, starting at the day-start hour."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim_cms.limits import gaming_day
from sim_cms.settings import CmsSettings

LA = ZoneInfo("America/Los_Angeles")
MS = timedelta(milliseconds=1)


def casino(zone: str = "America/Los_Angeles", hour: int = 6) -> CmsSettings:
    return CmsSettings(database_url="sqlite://", time_zone=zone, day_start_hour=hour)


def local(zone: str, *parts: int, fold: int = 0) -> datetime:
    """A local wall time in `zone` as a UTC instant (ms given as the last part)."""
    year, month, day, hour, minute, second, ms = parts
    wall = datetime(year, month, day, hour, minute, second, ms * 1000, tzinfo=ZoneInfo(zone),
                    fold=fold)
    return wall.astimezone(UTC)


def day_start(day: date, settings: CmsSettings) -> datetime:
    """The first millisecond of gaming day `day`, found by bisection (an independent oracle)."""
    low = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=2)
    high = low + timedelta(days=4)
    while high - low > MS:
        mid = low + (high - low) / 2
        mid = mid.replace(microsecond=mid.microsecond // 1000 * 1000)
        if gaming_day(mid, settings) >= day:
            high = mid
        else:
            low = mid
    return high


@pytest.mark.parametrize(
    ("label", "before", "after", "day"),
    [
        ("ordinary day", (2026, 11, 26, 5, 59, 59, 999), (2026, 11, 26, 6, 0, 0, 0),
         date(2026, 11, 26)),
        ("spring forward", (2026, 3, 8, 5, 59, 59, 999), (2026, 3, 8, 6, 0, 0, 0),
         date(2026, 3, 8)),
        ("fall back", (2026, 11, 1, 5, 59, 59, 999), (2026, 11, 1, 6, 0, 0, 0),
         date(2026, 11, 1)),
    ],
)
def test_a_new_gaming_day_starts_at_six_local_time(
    label: str, before: tuple[int, ...], after: tuple[int, ...], day: date
) -> None:
    settings = casino()
    assert gaming_day(local("America/Los_Angeles", *before), settings) == day - timedelta(days=1)
    assert gaming_day(local("America/Los_Angeles", *after), settings) == day


def test_the_spring_forward_gaming_day_lasts_23_hours() -> None:
    settings = casino()
    start = day_start(date(2026, 3, 7), settings)
    end = day_start(date(2026, 3, 8), settings)
    assert start == datetime(2026, 3, 7, 14, tzinfo=UTC)  # 06:00 PST
    assert end == datetime(2026, 3, 8, 13, tzinfo=UTC)  # 06:00 PDT
    assert end - start == timedelta(hours=23)


def test_the_fall_back_gaming_day_lasts_25_hours() -> None:
    settings = casino()
    start = day_start(date(2026, 10, 31), settings)
    end = day_start(date(2026, 11, 1), settings)
    assert end - start == timedelta(hours=25)


def test_both_one_thirty_am_of_the_fall_back_night_belong_to_the_same_day() -> None:
    settings = casino()
    first = local("America/Los_Angeles", 2026, 11, 1, 1, 30, 0, 0, fold=0)
    second = local("America/Los_Angeles", 2026, 11, 1, 1, 30, 0, 0, fold=1)
    assert second - first == timedelta(hours=1)
    assert gaming_day(first, settings) == gaming_day(second, settings) == date(2026, 10, 31)


def test_a_start_hour_skipped_by_spring_forward_starts_the_day_at_the_next_instant() -> None:
    settings = casino(hour=2)  # 02:00 does not exist in Los Angeles on 2026-03-08
    assert gaming_day(local("America/Los_Angeles", 2026, 3, 8, 1, 59, 59, 999), settings) \
        == date(2026, 3, 7)
    assert gaming_day(local("America/Los_Angeles", 2026, 3, 8, 3, 0, 0, 0), settings) \
        == date(2026, 3, 8)


def test_another_zone_and_start_hour() -> None:
    settings = casino("Europe/Berlin", hour=4)
    assert gaming_day(local("Europe/Berlin", 2026, 3, 29, 3, 59, 59, 999), settings) \
        == date(2026, 3, 28)
    assert gaming_day(local("Europe/Berlin", 2026, 3, 29, 4, 0, 0, 0), settings) \
        == date(2026, 3, 29)
    assert day_start(date(2026, 3, 29), settings) - day_start(date(2026, 3, 28), settings) \
        == timedelta(hours=23)


def test_a_midnight_start_hour_gives_the_calendar_day() -> None:
    settings = casino("Asia/Tokyo", hour=0)
    assert gaming_day(local("Asia/Tokyo", 2026, 1, 1, 0, 0, 0, 0), settings) == date(2026, 1, 1)
    assert gaming_day(local("Asia/Tokyo", 2025, 12, 31, 23, 59, 59, 999), settings) \
        == date(2025, 12, 31)


def test_a_naive_instant_is_taken_as_utc() -> None:
    settings = casino()
    naive = datetime(2026, 11, 26, 14, 0)
    assert gaming_day(naive, settings) == gaming_day(naive.replace(tzinfo=UTC), settings)


def test_every_gaming_day_of_2026_in_los_angeles_lasts_23_to_25_hours() -> None:
    settings = casino()
    starts = [day_start(date(2026, 1, 1) + timedelta(days=n), settings) for n in range(366)]
    lengths = {later - earlier for earlier, later in itertools.pairwise(starts)}
    assert lengths == {timedelta(hours=23), timedelta(hours=24), timedelta(hours=25)}


ZONES = st.sampled_from([
    "America/Los_Angeles", "America/New_York", "America/St_Johns", "Europe/Berlin",
    "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Chatham", "UTC",
])
INSTANTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300)
@given(zone=ZONES, hour=st.integers(0, 23), first=INSTANTS,
       gap=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)))
def test_gaming_day_never_goes_backwards(
    zone: str, hour: int, first: datetime, gap: timedelta
) -> None:
    settings = casino(zone, hour)
    assert gaming_day(first, settings) <= gaming_day(first + gap, settings)


@settings(max_examples=300)
@given(zone=ZONES, hour=st.integers(0, 23), moment=INSTANTS)
def test_every_gaming_day_lasts_between_23_and_25_hours(
    zone: str, hour: int, moment: datetime
) -> None:
    settings = casino(zone, hour)
    day = gaming_day(moment, settings)
    length = day_start(day + timedelta(days=1), settings) - day_start(day, settings)
    assert timedelta(hours=23) <= length <= timedelta(hours=25)
    assert gaming_day(moment + timedelta(hours=1), settings) - day <= timedelta(days=1)
