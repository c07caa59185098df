"""The background recovery sweep's lanes: a CMS that gives no answer costs one payment's
retries per backoff, not one per open payment, and once it answers every payment is credited
once. (Two merchants' CMSs, one of them dead, are in tests/e2e/test_trustly_startup_recovery.)
"""

from __future__ import annotations

from collections import Counter

import pytest

from sim_trustly.settings import TrustlySettings
from sim_trustly.tpas import payments, recovery, state_machine
from sim_trustly.tpas.recovery import RecoverySweeper
from simkit.settings import ConfigError
from simkit.wait import poll_until
from tests.api.tpas_support import Casino, CasinoFactory, make_casino, unique_user

pytestmark = pytest.mark.db
__all__ = ["make_casino"]  # the fixture, used by name

OPEN = 4


def _parked(casino: Casino) -> list[str]:
    """OPEN payments left in FUNDING by a CMS that drops every funding call, all due now."""
    casino.fault(path="/cws/v1/fundings*", action="drop", times=10_000)
    ids = []
    for _ in range(OPEN):
        view = casino.pay(casino.show_qr(), username=unique_user())
        assert view.status == "FUNDING"
        ids.append(view.payment_id)
    casino.clock.advance(60)  # past their retry time
    return ids


def _inquiries(casino: Casino, ids: list[str]) -> Counter[str]:
    return Counter({pid: casino.events(pid).count("INQUIRY") for pid in ids})


def _settle(sweeper: RecoverySweeper) -> None:
    """Wait (bounded) until no lane is queued or running."""
    assert poll_until(lambda: not sweeper.in_flight() or None, timeout_s=10, interval_s=0.01), \
        "a recovery lane did not finish within 10 s"


def test_a_dead_cms_costs_one_payment_per_backoff_and_all_are_credited_once_it_answers(
        make_casino: CasinoFactory) -> None:
    casino = make_casino()
    ids = _parked(casino)
    before = _inquiries(casino, ids)
    sweeper = RecoverySweeper(casino.ctx, concurrency=2)
    try:
        assert sweeper.tick() == 1  # one lane: every payment here has the same CMS
        _settle(sweeper)
        asked = list(_inquiries(casino, ids) - before)
        assert len(asked) == 1, asked  # the lane stopped at the first it could not settle
        assert casino.status(asked[0]).status == "FUNDING"

        assert sweeper.tick() == 0  # the CMS backs off: its payments are left alone meanwhile
        casino.clock.advance(casino.ctx.settings.cms.retries.backoff_cap_s)
        casino.clear_faults()  # the CMS answers again
        assert sweeper.tick() == 1
        _settle(sweeper)
    finally:
        sweeper.stop(5)

    assert {casino.status(pid).status for pid in ids} == {"CREDITED"}
    applied = [f["transactionId"] for f in casino.cms_fundings() if f["outcome"] == "APPLIED"]
    assert sorted(applied) == sorted(casino.status(pid).transaction_id for pid in ids)
    assert casino.meter() == 2000 * OPEN
    assert payments.count_open(casino.ctx.db) == 0
    assert casino.reconciliation()["reconciled"]


def test_start_up_hands_a_dead_process_s_payment_to_the_sweep_without_calling_the_cms(
        make_casino: CasinoFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    casino = make_casino()
    code = casino.show_qr()

    def crash(*args: object) -> None:
        raise RuntimeError("process died")

    monkeypatch.setattr(state_machine, "fund_authorized", crash)
    with pytest.raises(RuntimeError):
        casino.pay(code)
    monkeypatch.undo()
    (row,) = payments.list_payments(casino.ctx.db)
    assert row.status == "AUTHORIZED"  # and leased by the process that died
    sweeper = RecoverySweeper(casino.ctx, concurrency=1)
    try:
        assert sweeper.tick() == 0  # its lease still runs
        assert recovery.release_leases_at_startup(casino.trustly_app) == 1
        assert casino.events(row.id)[-1] == "LEASE_RELEASED"  # and nothing sent to the CMS
        assert casino.cms_fundings() == [] and casino.status(row.id).status == "AUTHORIZED"
        assert sweeper.tick() == 1
        _settle(sweeper)
    finally:
        sweeper.stop(5)
    final = casino.status(row.id)
    assert (final.status, final.transaction_id) == ("CREDITED", row.transaction_id)
    assert [f["transactionId"] for f in casino.cms_fundings()] == [row.transaction_id]
    assert casino.meter() == 2000


def test_the_recovery_threads_are_a_setting_between_1_and_64() -> None:
    assert TrustlySettings(database_url="sqlite://").tpas_recovery_concurrency == 4
    for wrong in (0, 65):
        with pytest.raises(ConfigError, match="tpas_recovery_concurrency"):
            TrustlySettings(database_url="sqlite://", tpas_recovery_concurrency=wrong)
