"""Acceptance: against the broken CMS each planted defect is caught by at least one scenario,
and no scenario fails on the correct sims.

Each run is the real thing: the CMS (`tests.broken_cms`, gunicorn, 2 workers, fresh database)
is a process on 127.0.0.1, described to `scanpay certify --target` as a partner with every
hook; certify runs its own sim_trustly on the port the CMS was told, plays TPAS and the
player, and writes `report.json`, which is what is judged here.

`CAUGHT_BY` is the catalogue read with each defect in mind (why, next to each entry), then
confirmed by running the whole catalogue against each defect. The failed scenarios must be
*exactly* those: a scenario that fails for a defect it is not about is as wrong as a defect
nobody notices. To stay within about a minute, the control run and `no-idempotency` (whose
catch REC-002 depends on what ran before it) run the whole catalogue; the other defects run
the scenarios that must catch them plus neighbours that must not (`ALSO_RUN`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.certify.results import RunResult
from harness.certify.scenarios import CATALOGUE
from tests.broken_cms.defects import Defect
from tests.broken_cms.server import BrokenCms, serve_broken_cms, write_partner_target
from tests.conftest import DatabaseFactory
from tests.e2e.processes import SCANPAY

# Only the control run is `db` (CI runs it again on PostgreSQL: the reference CMS on that
# database passes the catalogue). The planted-defect runs judge the harness's verdicts; the
# broken CMS they run against is a test double, and its database does not change what they
# judge, so they run once, on SQLite (about 100 s less in CI's PostgreSQL phase).
pytestmark = [pytest.mark.slow]

CERTIFY_TIMEOUT_S = 180
CAUGHT_BY: dict[Defect, frozenset[str]] = {
    # FUND-001 and FUND-002 deliver one funding twice (the meter goes up twice, no replay),
    # FUND-003 reuses the id with another body (credited instead of 422), FUND-009 sends 8
    # copies at once (8x), FUND-010 the id on another EGM (credited there too), FUND-011 a
    # retry after the read timeout (2x), and REC-002 finds the extra credits in the CMS's
    # fundings with no payment or harness call to explain them.
    # PAY-005 is *not* caught: TPAS asks the status inquiry before it resends, finds APPLIED
    # and never resends, so a CMS without idempotency passes it.
    Defect.NO_IDEMPOTENCY: frozenset({"FUND-001", "FUND-002", "FUND-003", "FUND-009",
                                      "FUND-010", "FUND-011", "REC-002"}),
    # LIM-005 races 16 fundings for room for one; every sequential limit check still holds.
    Defect.LIMIT_NO_LOCK: frozenset({"LIM-005"}),
    # SCAN-004 moves the clocks to rotatesAt and expects a new QR; SCAN-005 too, before it
    # pays the old QR; SCAN-006 waits for the expiry anyway.
    Defect.IGNORES_ROTATION: frozenset({"SCAN-004", "SCAN-005"}),
    # One scenario per refusing EGM state, each expecting its own status and code.
    Defect.WRONG_ERROR_CODES: frozenset({"EGM-001", "EGM-002", "EGM-003", "EGM-004"}),
    # EGM-004 funds an OFFLINE EGM: 201 and a meter that moved.
    Defect.CREDITS_OFFLINE_EGM: frozenset({"EGM-004"}),
    # FUND-009's 8 identical fundings at once all miss the unlocked lookup (8x); FUND-010's
    # two EGMs under one new id at once both apply (2x). Every sequential retry is replayed.
    Defect.REPLAY_OUTSIDE_LOCK: frozenset({"FUND-009", "FUND-010"}),
    # FUND-011's retry after the read timeout finds no stored outcome and credits again (2x);
    # FUND-009's and FUND-010's simultaneous copies do the same, for the same reason.
    Defect.SLOW_ANSWER: frozenset({"FUND-009", "FUND-010", "FUND-011"}),
    # QR-001 funds one QR under a second transactionId: applied (2x).
    Defect.MANY_FUNDINGS_PER_QR: frozenset({"QR-001"}),
    # QR-003 pays a QR and reads the screen: it shows no QR until the rotation.
    Defect.NO_REPLACEMENT_AFTER_USE: frozenset({"QR-003"}),
    # QR-002 funds a QR an hour past its expiry (and Trustly's leeway): applied.
    Defect.ACCEPTS_EXPIRED_QR: frozenset({"QR-002"}),
}
FULL_CATALOGUE: frozenset[Defect] = frozenset({Defect.NO_IDEMPOTENCY})
# Neighbours of each catch that must still pass: same area, not about the defect.
ALSO_RUN: dict[Defect, tuple[str, ...]] = {
    Defect.LIMIT_NO_LOCK: ("LIM-002", "LIM-003", "LIM-004", "FUND-001", "PAY-001"),
    Defect.IGNORES_ROTATION: ("SCAN-001", "SCAN-003", "SCAN-006", "PAY-001", "QR-003"),
    Defect.WRONG_ERROR_CODES: ("EGM-005", "FUND-004", "FUND-007", "LIM-002", "PAY-001"),
    Defect.CREDITS_OFFLINE_EGM: ("EGM-001", "EGM-002", "EGM-003", "EGM-005", "PAY-001"),
    Defect.REPLAY_OUTSIDE_LOCK: ("FUND-001", "FUND-002", "FUND-003", "FUND-011", "LIM-005",
                                 "PAY-003", "PAY-005"),
    Defect.SLOW_ANSWER: ("FUND-001", "FUND-002", "FUND-003", "PAY-001", "PAY-005"),
    Defect.MANY_FUNDINGS_PER_QR: ("QR-002", "FUND-001", "FUND-009", "PAY-001", "PAY-002",
                                  "LIM-002"),
    Defect.NO_REPLACEMENT_AFTER_USE: ("SCAN-003", "SCAN-004", "SCAN-005", "PAY-001",
                                      "PAY-002", "QR-001"),
    Defect.ACCEPTS_EXPIRED_QR: ("QR-001", "SCAN-005", "SCAN-006", "PAY-001", "LIM-004"),
}


@dataclass(frozen=True)
class Certified:
    """One `scanpay certify` run: its exit code, its report, and the console for messages."""

    exit_code: int
    report: RunResult
    console: str

    def ids(self, *outcomes: str) -> set[str]:
        """The scenario ids that ended in any of `outcomes`."""
        return {s.id for s in self.report.scenarios if s.outcome in outcomes}

    def reasons(self, *outcomes: str) -> dict[str, str]:
        """Why each scenario of `outcomes` ended so (for assertion messages)."""
        return {s.id: s.reason for s in self.report.scenarios if s.outcome in outcomes}


def certify(cms: BrokenCms, workdir: Path, only: tuple[str, ...] = ()) -> Certified:
    """Run `scanpay certify` against `cms` as a partner target; the parsed report.json."""
    target = write_partner_target(cms, workdir / "target.toml")
    reports = workdir / "reports"
    args = [SCANPAY, "certify", "--target", str(target), "--report-dir", str(reports)]
    if only:
        args += ["--only", ",".join(only)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=CERTIFY_TIMEOUT_S,
                          check=False)
    console = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n--- cms ---\n{cms.log_tail()}"
    report_file = reports / "report.json"
    assert report_file.exists(), (done.returncode, console)
    return Certified(done.returncode, RunResult.from_json(_load(report_file)), console)


def _load(path: Path) -> dict[str, object]:
    import json

    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded


@pytest.fixture(scope="module")
def module_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseFactory]:
    """Fresh databases for this module's CMS processes (dropped at the end on PostgreSQL)."""
    factory = DatabaseFactory(tmp_path_factory.mktemp("broken-cms-dbs"))
    yield factory
    factory.drop_all()


def run_against(defects: frozenset[Defect], databases: DatabaseFactory, workdir: Path,
                only: tuple[str, ...] = ()) -> Certified:
    """Start the broken CMS with `defects`, certify it, stop it."""
    with serve_broken_cms(defects, databases.new("cms"), workdir) as cms:
        return certify(cms, workdir, only)


def test_catalogue_knows_every_scenario_named_here() -> None:
    known = {item.id for item in CATALOGUE}
    named = set().union(*CAUGHT_BY.values(), *ALSO_RUN.values())
    assert named <= known, named - known
    assert set(CAUGHT_BY) == set(Defect)


@pytest.mark.db
def test_the_correct_cms_passes_every_scenario(module_databases: DatabaseFactory,
                                               tmp_path: Path) -> None:
    run = run_against(frozenset(), module_databases, tmp_path)
    assert run.ids("failed", "error") == set(), (run.reasons("failed", "error"), run.console)
    assert run.ids("skipped") == set(), run.reasons("skipped")
    assert run.ids("passed") == {item.id for item in CATALOGUE}
    assert run.exit_code == 0, run.console


@pytest.mark.parametrize("defect", list(Defect), ids=str)
def test_each_planted_defect_is_caught_by_exactly_its_scenarios(
    defect: Defect, module_databases: DatabaseFactory, tmp_path: Path,
) -> None:
    expected = CAUGHT_BY[defect]
    only = () if defect in FULL_CATALOGUE else tuple(sorted(expected | set(ALSO_RUN[defect])))
    run = run_against(frozenset({defect}), module_databases, tmp_path, only)
    assert run.exit_code == 1, run.console
    assert run.ids("error") == set(), (run.reasons("error"), run.console)
    assert run.ids("failed") == expected, (run.reasons("failed"), run.console)
    assert run.ids("skipped") == set(), run.reasons("skipped")
