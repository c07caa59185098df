"""Certification is repeatable against a long-lived CMS: nothing from one run fails the next.

One CMS process (the reference sim_cms under gunicorn, as `tests.broken_cms` serves it with no
defect) lives through three whole `scanpay certify --target` runs in a row. Each later run meets
the earlier runs' fundings, meters, limits and QRs; it passes because every scenario judges
deltas and its own references, and the whole-run reconciliation (REC-002) looks only at what
its own run created (its payments and transactionIds), never at a time window.

The first run leaves the CMS's clock about a day ahead (docs/partner-contract.md, "How a run
leaves it"): the second run starts from where the first left it, which the contract says is
correct, and the third after the clock is re-aligned as the contract describes. (One CMS for
the three runs: the first run of two separate tests would be the same run twice.)
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


def _runs_in_a_row(databases: DatabaseFactory, tmp_path: Path, realign_before: set[int],
                   runs: int) -> None:
    every = {item.id for item in CATALOGUE}
    with serve_broken_cms(frozenset(), databases.new("cms"), tmp_path) as cms:
        for n in range(1, runs + 1):
            if n in realign_before:
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


def test_three_runs_in_a_row_pass_from_where_the_last_left_the_clock_and_after_realigning(
    databases: DatabaseFactory, tmp_path: Path,
) -> None:
    """Run 2 starts from the clock run 1 left a day ahead; run 3 after an operator
    re-aligned it to real time (both correct, says the contract). Each meets every earlier
    run's fundings, meters, limits and QRs."""
    _runs_in_a_row(databases, tmp_path, realign_before={3}, runs=3)
