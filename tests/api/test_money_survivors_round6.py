"""What an operator and a player see in corners mutation testing found untested.

- A decided funding's stored record keeps the gaming day its amount counted against: one
  decided a millisecond before the 06:00 boundary belongs to the previous day.
- `GET /_sim/payments?since=` lists the payments created at that instant or later.
- A live request whose funding a sweep settled while the CMS's answer was on its way back
  answers 201 CREDITED, the sweep's outcome, and the CMS credits once.
- A payment's first send leases it for `tpas_lease_s` from when it is sent (not from the
  bank's authorization): a slow limit check does not let a sweep take it over mid-send.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sim_cms.models import FundingRecord
from simkit.clock import format_instant
from tests.api.test_funding_api import app, client, funding, post
from tests.api.test_money_survivors_round4 import listed_ids
from tests.api.test_tpas_payment_records import kinds, record
from tests.api.test_tpas_retry_and_events import (
    FUNDINGS,
    details,
    on_cms_request,
    recover,
    the_payment,
)
from tests.api.tpas_support import Casino, CasinoFactory, make_casino
from tests.conftest import cms_bearer

pytestmark = pytest.mark.db
__all__ = ["app", "client", "make_casino"]  # the fixtures, used by name


def test_a_funding_record_keeps_the_gaming_day_its_amount_counted_against(
    app: Flask, client: FlaskClient,
) -> None:
    ctx = app.extensions["sim_cms"]
    day = date(2026, 11, 26)
    boundary = datetime.combine(day, time(6), tzinfo=ZoneInfo("America/Los_Angeles"))
    ctx.clock.set(boundary - timedelta(milliseconds=1))  # 05:59:59.999 local
    assert post(client, cms_bearer(client), funding("tx-night")).status_code == 201
    ctx.clock.set(boundary)
    assert post(client, cms_bearer(client), funding("tx-morning")).status_code == 201
    with ctx.db.read() as session:
        stored = {tid: session.get(FundingRecord, tid) for tid in ("tx-night", "tx-morning")}
        days = {tid: r.gaming_day if r is not None else None for tid, r in stored.items()}
    assert days == {"tx-night": day - timedelta(days=1), "tx-morning": day}


def test_the_control_api_lists_payments_created_since_an_instant_inclusive(
    make_casino: CasinoFactory,
) -> None:
    casino = make_casino()
    code = casino.show_qr()
    made = []
    for _ in range(3):  # refused at the bank, the code handed back each time
        made.append(casino.pay(code, password="NotEnoughFunds").payment_id)
        casino.clock.advance(1)
    since = record(casino, made[1])["createdAt"]
    assert listed_ids(casino, since=since) == made[1:]
    assert listed_ids(casino) == made


def test_a_live_request_whose_funding_a_sweep_settled_meanwhile_answers_credited(
    make_casino: CasinoFactory,
) -> None:
    """The CMS applied the funding, but its answer came back after the live request's lease
    ran out; a sweep took the payment over, asked the CMS and credited it. The live request
    then finds the payment no longer FUNDING and answers the stored outcome."""
    casino = make_casino()
    passes: list[dict[str, Any]] = []
    on_cms_request(casino, "POST", FUNDINGS, 1, after=lambda: passes.append(
        late_sweep(casino, casino.ctx.settings.tpas_lease_s + 1)))
    view = casino.pay(casino.show_qr())
    assert passes == [{"finished": 1, "open": 0}]
    assert (view.status, view.credit_meter, casino.meter()) == ("CREDITED", 2000, 2000)
    assert [f["outcome"] for f in casino.cms_fundings()] == ["APPLIED"]
    body = record(casino, view.payment_id)
    assert kinds(body)[-3:] == ["RECOVERY_LEASE", "INQUIRY", "CREDITED"]  # the sweep's
    assert details(body, "FUNDING_SENT") == [{"attempt": 1}]  # sent once, by the live request
    assert (body["status"], body["attempts"]) == ("CREDITED", 1)


def late_sweep(casino: Casino, seconds: float) -> dict[str, Any]:
    """`seconds` pass, then one recovery pass runs: its counts."""
    casino.clock.advance(seconds)
    return recover(casino)


def test_no_sweep_takes_a_payment_while_its_first_send_is_on_its_way(
    make_casino: CasinoFactory,
) -> None:
    """The limit check took `tpas_lease_s - 5` s, so the lease taken at the bank's
    authorization has ended 10 s into the send; the send's own lease has not, and a sweep
    then finds nothing due."""
    casino = make_casino()
    lease_s = casino.ctx.settings.tpas_lease_s
    code = casino.show_qr()
    seen: list[tuple[Any, ...]] = []

    def sweep_10_s_in() -> None:
        sent_at = casino.clock.now()
        casino.clock.advance(10)
        payment = the_payment(casino)
        lease_end = format_instant(sent_at + timedelta(seconds=lease_s))
        seen.append((payment["status"], payment["nextAttemptAt"] == lease_end,
                     recover(casino)))

    on_cms_request(casino, "GET", "/cws/v1/limits/", 1,
                   after=lambda: casino.clock.advance(lease_s - 5))
    on_cms_request(casino, "POST", FUNDINGS, 1, before=sweep_10_s_in)
    view = casino.pay(code)
    assert seen == [("FUNDING", True, {"finished": 0, "open": 1})]
    assert view.status == "CREDITED", view
    body = record(casino, view.payment_id)
    assert "RECOVERY_LEASE" not in kinds(body)
    assert details(body, "FUNDING_SENT") == [{"attempt": 1}]
    assert casino.meter() == 2000
