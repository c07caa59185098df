"""One clock per deployment: moves add up, simulated waits move nothing, both sims agree.

Marked `db`: the controllable clock keeps its state in a database row, and the atomicity
of a move is a property of that row's locking, so these run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from harness.cli.serve import ServeOptions, build_sims
from sim_trustly.app import create_app
from sim_trustly.settings import TrustlySettings
from simkit.clock import ManualClock, format_instant, parse_instant, wait
from simkit.clock_store import DatabaseClockStore
from simkit.db import Database
from simkit.models import KernelBase
from tests.conftest import ADMIN_TOKEN, DatabaseFactory

pytestmark = pytest.mark.db

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
START = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
RACERS = 20


def race(action: Callable[[int], Any]) -> list[Any]:
    """Run `action(i)` for each of RACERS threads, released together; their results."""
    barrier = threading.Barrier(RACERS)
    results: list[Any] = [None] * RACERS
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = action(index)
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return results


@pytest.fixture
def controllable_trustly(databases: DatabaseFactory) -> Iterator[Flask]:
    """sim_trustly as a server runs it: its controllable clock stored in its database."""
    app = create_app(TrustlySettings(database_url=databases.new("trustly"),
                                     admin_token=ADMIN_TOKEN, controllable_clock=True))
    yield app
    app.extensions["sim_trustly"].close()


def clock_now(app: Flask) -> datetime:
    response = app.test_client().get("/_sim/clock", headers=ADMIN)
    assert response.status_code == 200, response.get_data()
    return parse_instant(response.get_json()["now"])


def test_twenty_concurrent_advances_through_the_control_api_move_the_clock_200_s(
    controllable_trustly: Flask,
) -> None:
    app = controllable_trustly
    before = clock_now(app)
    answers = race(lambda _: app.test_client().post("/_sim/clock", json={"advance": 10},
                                                     headers=ADMIN))
    assert [answer.status_code for answer in answers] == [200] * RACERS
    assert clock_now(app) - before == timedelta(seconds=10 * RACERS)


def test_twenty_workers_advancing_at_once_move_the_shared_clock_200_s(
    databases: DatabaseFactory,
) -> None:
    url = databases.new("clock")
    first = Database(url)
    KernelBase.metadata.create_all(first.engine)
    workers = [Database(url) for _ in range(RACERS)]  # one engine per worker process
    clocks = [ManualClock(START, DatabaseClockStore(db)) for db in workers]
    try:
        race(lambda index: clocks[index].advance(10))
        assert ManualClock(START, DatabaseClockStore(first)).now() == START + timedelta(
            seconds=10 * RACERS)
    finally:
        for db in (first, *workers):
            db.dispose()


def test_a_simulated_wait_leaves_a_stored_clock_where_it_was(databases: DatabaseFactory) -> None:
    db = Database(databases.new("clock"))
    KernelBase.metadata.create_all(db.engine)
    try:
        clock = ManualClock(START, DatabaseClockStore(db))
        wait(clock, 600)  # the demo bank's longest Sleep
        assert clock.now() == START
    finally:
        db.dispose()


@pytest.fixture
def served(tmp_path: Path, databases: DatabaseFactory) -> Iterator[tuple[Flask, Flask]]:
    """Both sims as `scanpay serve --controllable-clock` builds them."""
    options = ServeOptions(data_dir=tmp_path, trustly_db=databases.new("trustly"),
                           cms_db=databases.new("cms"), controllable_clock=True,
                           admin_token=ADMIN_TOKEN)
    trustly, cms = build_sims(options)
    yield trustly, cms
    trustly.extensions["sim_trustly"].close()
    cms.extensions["sim_cms"].close()


@pytest.mark.parametrize("mover", ["trustly", "cms"])
def test_in_serve_both_sims_report_the_same_now_after_an_advance_on_either(
    served: tuple[Flask, Flask], mover: str,
) -> None:
    trustly, cms = served
    app = trustly if mover == "trustly" else cms
    before = clock_now(trustly)
    moved = app.test_client().post("/_sim/clock", json={"advance": 125}, headers=ADMIN)
    assert moved.status_code == 200, moved.get_data()
    assert clock_now(trustly) == clock_now(cms) == before + timedelta(seconds=125)


def test_in_serve_a_set_on_the_cms_is_trustlys_time_too(served: tuple[Flask, Flask]) -> None:
    trustly, cms = served
    target = datetime(2030, 1, 1, 6, 0, tzinfo=UTC)
    moved = cms.test_client().post("/_sim/clock", json={"set": format_instant(target)},
                                   headers=ADMIN)
    assert moved.status_code == 200, moved.get_data()
    assert clock_now(trustly) == clock_now(cms) == target
