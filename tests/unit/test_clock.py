"""The injected clock: manual time for tests, instant formatting, and the no-wall-clock rule."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from simkit.clock import (
    ClockState,
    ManualClock,
    MemoryClockStore,
    SystemClock,
    format_instant,
    monotonic,
    parse_instant,
    system_now,
    utc,
    wait,
)

START = datetime(2026, 11, 25, 21, 0, 0, tzinfo=UTC)
REAL = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


# --- ManualClock ------------------------------------------------------------------------------


def test_manual_clock_stands_still_at_its_start() -> None:
    clock = ManualClock(start=START)
    assert clock.now() == START
    assert clock.now() == START
    assert clock.frozen


def test_manual_clock_start_may_be_naive_and_is_taken_as_utc() -> None:
    assert ManualClock(start=datetime(2026, 11, 25, 21, 0)).now() == START


def test_manual_clock_without_a_start_begins_at_real_time() -> None:
    before = system_now()
    now = ManualClock().now()
    assert before <= now <= system_now()


def test_advance_moves_time_forward_and_returns_the_new_now() -> None:
    clock = ManualClock(start=START)
    assert clock.advance(301) == START + timedelta(seconds=301)
    assert clock.now() == START + timedelta(seconds=301)


def test_advance_accepts_fractions_of_a_second() -> None:
    clock = ManualClock(start=START)
    clock.advance(0.25)
    assert clock.now() == START + timedelta(milliseconds=250)


def test_negative_advance_moves_time_back() -> None:
    clock = ManualClock(start=START)
    assert clock.advance(-60) == START - timedelta(seconds=60)


def test_advances_accumulate() -> None:
    clock = ManualClock(start=START)
    clock.advance(60)
    clock.advance(30)
    assert clock.now() == START + timedelta(seconds=90)


def test_set_freezes_time_at_the_instant_given() -> None:
    clock = ManualClock(start=START)
    target = datetime(2030, 1, 1, 6, 0, tzinfo=UTC)
    assert clock.set(target) == target
    assert clock.now() == target
    assert clock.frozen


def test_set_converts_other_zones_to_utc() -> None:
    clock = ManualClock(start=START)
    clock.set(datetime(2030, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=2))))
    assert clock.now() == datetime(2030, 1, 1, 6, 0, tzinfo=UTC)
    assert clock.now().utcoffset() == timedelta(0)


def test_resumed_clock_runs_on_from_the_frozen_instant() -> None:
    clock = ManualClock(start=START)
    before = system_now()
    clock.resume()
    now = clock.now()
    elapsed = system_now() - before
    assert not clock.frozen
    assert START <= now <= START + elapsed


def test_resumed_state_moves_at_the_speed_of_real_time() -> None:
    running = ClockState(frozen_at=START).resumed(REAL)
    assert running.now(REAL) == START
    assert running.now(REAL + timedelta(seconds=5)) == START + timedelta(seconds=5)


def test_advancing_a_running_state_shifts_its_offset() -> None:
    running = ClockState(frozen_at=START).resumed(REAL).advanced(60, REAL)
    assert running.frozen_at is None
    assert running.now(REAL + timedelta(seconds=5)) == START + timedelta(seconds=65)


def test_resuming_a_running_state_keeps_its_time() -> None:
    running = ClockState(frozen_at=START).resumed(REAL)
    later = REAL + timedelta(seconds=10)
    assert running.resumed(later).now(later) == running.now(later)


def test_set_on_a_running_state_freezes_it() -> None:
    running = ClockState(frozen_at=START).resumed(REAL)
    frozen = running.set_to(START + timedelta(days=1))
    assert frozen.now(REAL + timedelta(hours=5)) == START + timedelta(days=1)


def test_manual_clock_now_is_aware_utc() -> None:
    now = ManualClock(start=START).now()
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)


def test_two_clocks_on_one_store_see_each_other_s_moves() -> None:
    store = MemoryClockStore()
    first, second = ManualClock(start=START, store=store), ManualClock(start=START, store=store)
    first.advance(120)
    assert second.now() == START + timedelta(seconds=120)
    target = datetime(2030, 1, 1, tzinfo=UTC)
    second.set(target)
    assert first.now() == target


def test_a_clock_joining_a_used_store_keeps_the_stored_time_not_its_start() -> None:
    store = MemoryClockStore()
    ManualClock(start=START, store=store).advance(60)
    late = ManualClock(start=datetime(2000, 1, 1, tzinfo=UTC), store=store)
    assert late.now() == START + timedelta(seconds=60)


def test_system_clock_reads_aware_utc_real_time() -> None:
    before = system_now()
    now = SystemClock().now()
    assert before <= now <= system_now()
    assert now.utcoffset() == timedelta(0)


# --- instants ---------------------------------------------------------------------------------


def test_format_instant_is_utc_with_milliseconds_and_z() -> None:
    assert format_instant(START) == "2026-11-25T21:00:00.000Z"


def test_format_instant_truncates_to_milliseconds() -> None:
    assert format_instant(START.replace(microsecond=123_999)) == "2026-11-25T21:00:00.123Z"


def test_format_instant_converts_other_zones_to_utc() -> None:
    local = datetime(2026, 11, 25, 23, 0, tzinfo=timezone(timedelta(hours=2)))
    assert format_instant(local) == "2026-11-25T21:00:00.000Z"


def test_formatted_instant_parses_back_truncated_to_milliseconds() -> None:
    moment = START.replace(microsecond=987_654)
    assert parse_instant(format_instant(moment)) == START.replace(microsecond=987_000)


@pytest.mark.parametrize(
    "text",
    ["2026-11-25T21:00:00Z", "2026-11-25T21:00:00.000Z", "2026-11-25T21:00:00+00:00",
     "2026-11-25T23:00:00+02:00", "2026-11-25T16:00:00-05:00", "2026-11-25T21:00:00",
     " 2026-11-25T21:00:00Z "],
)
def test_parse_instant_accepts_z_offsets_and_naive_utc(text: str) -> None:
    parsed = parse_instant(text)
    assert parsed == START
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01T00:00:00Z", "2026-11-25T25:00Z"])
def test_parse_instant_refuses_what_is_not_an_instant(text: str) -> None:
    with pytest.raises(ValueError):
        parse_instant(text)


def test_utc_takes_naive_values_to_be_utc() -> None:
    assert utc(datetime(2026, 11, 25, 21, 0)) == START
    assert utc(datetime(2026, 11, 25, 21, 0)).tzinfo is UTC


def test_utc_converts_aware_values_to_utc_keeping_the_instant() -> None:
    local = datetime(2026, 11, 25, 16, 0, tzinfo=timezone(timedelta(hours=-5)))
    converted = utc(local)
    assert converted == local
    assert converted.hour == 21
    assert converted.utcoffset() == timedelta(0)


# --- house rule: only simkit/clock.py reads the machine's clock ---------------------------------

SCANNED_PACKAGES = ("simkit", "sim_trustly", "sim_cms", "harness")
ALLOWED_FILE = Path("simkit/clock.py")
BANNED_CALLS = frozenset({
    "datetime.datetime.now", "datetime.datetime.utcnow", "datetime.datetime.today",
    "datetime.date.today", "time.time", "time.time_ns",
})


def _import_aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> fully qualified name, for every import in the module."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for name in node.names:
                local = name.asname or name.name.split(".")[0]
                aliases[local] = name.name if name.asname else local
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for name in node.names:
                aliases[name.asname or name.name] = f"{node.module}.{name.name}"
    return aliases


def _dotted(node: ast.expr) -> str | None:
    """`a.b.c` for a chain of attribute accesses on a name, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def wall_clock_calls(source: str) -> list[tuple[int, str]]:
    """(line, qualified name) of every call in `source` that reads the machine's clock."""
    tree = ast.parse(source)
    aliases = _import_aliases(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or (dotted := _dotted(node.func)) is None:
            continue
        head, _, rest = dotted.partition(".")
        qualified = ".".join(filter(None, [aliases.get(head, head), rest]))
        if qualified in BANNED_CALLS:
            found.append((node.lineno, qualified))
    return found


@pytest.mark.parametrize(
    "source",
    [
        "import datetime\ndatetime.datetime.now()",
        "from datetime import datetime\ndatetime.now(UTC)",
        "from datetime import datetime as dt\ndt.utcnow()",
        "from datetime import date\ndate.today()",
        "import time\ntime.time()",
        "from time import time\ntime()",
        "import time as t\nt.time_ns()",
        "def f():\n    from datetime import datetime\n    return datetime.now()",
    ],
)
def test_wall_clock_scanner_finds_each_banned_spelling(source: str) -> None:
    assert len(wall_clock_calls(source)) == 1


@pytest.mark.parametrize(
    "source",
    ["clock.now()", "self.clock.now()", "import time\ntime.monotonic()",
     "from datetime import datetime\ndatetime.fromisoformat('2026-01-01')"],
)
def test_wall_clock_scanner_allows_injected_clocks_and_monotonic_time(source: str) -> None:
    assert wall_clock_calls(source) == []


def test_only_the_clock_module_reads_the_machine_s_clock() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {name}()"
        for package in SCANNED_PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.relative_to(ROOT) != ALLOWED_FILE
        for line, name in wall_clock_calls(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "read time from the injected Clock instead:\n" + "\n".join(offenders)


def test_the_rule_scans_real_source_files() -> None:
    scanned = [path for package in SCANNED_PACKAGES for path in (ROOT / package).rglob("*.py")]
    assert ROOT / "simkit" / "money.py" in scanned
    assert wall_clock_calls((ROOT / ALLOWED_FILE).read_text(encoding="utf-8"))


@pytest.mark.parametrize(("instant", "text"), [
    (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00.000Z"),
    (datetime(999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), "0999-12-31T23:59:59.999Z"),
    (datetime(9999, 12, 31, tzinfo=UTC), "9999-12-31T00:00:00.000Z"),
])
def test_format_instant_writes_four_digit_years(instant: datetime, text: str) -> None:
    assert format_instant(instant) == text
    assert parse_instant(text) == instant.replace(microsecond=instant.microsecond // 1000 * 1000)


def test_a_simulated_wait_on_a_frozen_clock_takes_no_time_and_moves_nothing() -> None:
    clock = ManualClock(start=START)
    started = monotonic()
    wait(clock, 600)
    assert clock.now() == START
    assert monotonic() - started < 1


def test_a_simulated_wait_on_a_running_clock_takes_real_time_and_no_more() -> None:
    clock = ManualClock(start=START)
    clock.resume()
    offset = clock.now() - system_now()
    started = monotonic()
    wait(clock, 0.2)
    assert monotonic() - started >= 0.2
    assert abs((clock.now() - system_now()) - offset) < timedelta(seconds=0.1)  # not moved
