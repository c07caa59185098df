"""Certification is repeatable against a long-lived CMS: nothing from one run fails the next.

One CMS process (the reference sim_cms under gunicorn, as `tests.broken_cms` serves it with no
defect) lives through two whole `scanpay certify --target` runs in a row. The second run meets
the first run's fundings, meters, limits and QRs; it passes because every scenario judges
deltas and its own references, and the whole-run reconciliation (REC-002) looks only at what
its own run created (its payments and transactionIds), never at a time window.

The first run leaves the CMS's clock about a day ahead (docs/partner-contract.md, "How a run
leaves it"): one test re-aligns it between the runs as the contract describes, the other
starts the second run from where the first left it, which the contract says is correct.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import httpx
import pytest

from harness.certify.scenarios import CATALOGUE
from simkit.clock import format_instant, monotonic, parse_instant, system_now
from tests.broken_cms.server import ADMIN_TOKEN, BrokenCms, serve_broken_cms
from tests.conftest import DatabaseFactory
from tests.e2e.test_certify_broken_cms import certify

pytestmark = [pytest.mark.db, pytest.mark.slow]


def _realign(cms: BrokenCms) -> None:
    """Put the CMS's clock back to real time, as docs/partner-contract.md tells an operator."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for body in ({"set": format_instant(system_now())}, {"resume": True}):
        assert httpx.post(f"{cms.base_url}/_sim/clock", json=body, headers=admin,
                          timeout=10).status_code == 200


def _cms_now(cms: BrokenCms) -> datetime:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    answer = httpx.get(f"{cms.base_url}/_sim/clock", headers=admin, timeout=10)
    return parse_instant(answer.json()["now"])


def _two_runs(databases: DatabaseFactory, tmp_path: Path, *, realign: bool) -> None:
    every = {item.id for item in CATALOGUE}
    with serve_broken_cms(frozenset(), databases.new("cms"), tmp_path) as cms:
        for n in (1, 2):
            if n == 2 and realign:
                _realign(cms)
            workdir = tmp_path / f"run-{n}"
            workdir.mkdir()
            before, wall_started = _cms_now(cms), monotonic()
            run = certify(cms, workdir)
            moved = (_cms_now(cms) - before).total_seconds()
            assert run.ids("failed", "error") == set(), (n, run.reasons("failed", "error"),
                                                         run.console)
            assert run.ids("passed") == every, (n, run.reasons("skipped"), run.console)
            assert run.exit_code == 0, (n, run.console)
            # The report says how far the run moved the CMS's clock: what the clock really
            # moved, less the wall time it may have run on its own.
            reported = run.report.clock_moved_s
            assert reported is not None and reported > 3600, run.console
            slack = 0.001  # both are sums of float seconds
            assert -slack <= moved - reported <= monotonic() - wall_started + 1, (moved,
                                                                                  reported)
            assert f"moved the CMS's clock {reported:,.0f} s" in run.console


def test_two_runs_in_a_row_against_one_long_running_cms_both_pass(
    databases: DatabaseFactory, tmp_path: Path,
) -> None:
    _two_runs(databases, tmp_path, realign=True)


def test_a_second_run_starts_from_the_clock_the_first_left_and_passes(
    databases: DatabaseFactory, tmp_path: Path,
) -> None:
    _two_runs(databases, tmp_path, realign=False)
