"""What a player, an operator and an auditor see in the corners mutation testing found untested.

- The CMS refuses a funding in a currency its EGM does not take, naming the `currency` field
  and the currency it expected.
- The first funding of an EGM (on PostgreSQL, the general path, which also makes the EGM's
  audit head) is audited as FUNDING_APPLIED, like every later one.
- A payment's history names the reason the bank refused it, also when the deployment keeps
  the refused code used; a CMS rejection that came without a code is recorded as
  CMS_REJECTED; a 404 to a funding request, taken as unknown, keeps the code it came with.
- A new payment is leased for the bank's longest step, so no sweep takes it over while the
  player is at the bank; and a bank refusal that comes after a sweep did finish the payment
  is answered with the sweep's outcome.
- `GET /_sim/payments` answers at most 1,000 payments, the oldest first, unless asked for
  more (`limit`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sim_cms import audit
from sim_trustly.cms_client.partner_profiles import DEFAULT_CMS_PROFILE
from sim_trustly.cms_client.protocol import FundingCall, FundingResult
from sim_trustly.cms_client.reference_adapter import ReferenceAdapter
from sim_trustly.microsite import demo_bank
from simkit.clock import format_instant
from tests.api.test_cms_money_records import audit_payloads
from tests.api.test_funding_api import app, auth, client, funding, post
from tests.api.test_tpas_payment_records import detail, kinds, record
from tests.api.test_tpas_recovery_records import recover
from tests.api.test_tpas_retry_and_events import FUNDINGS, NotFoundOnPostAdapter, pay_body
from tests.api.tpas_support import ADMIN, Casino, CasinoFactory, make_casino, unique_user

pytestmark = pytest.mark.db
__all__ = ["app", "auth", "client", "make_casino"]  # the fixtures, used by name

PAGE = 1000  # the control API's default page of payments


def with_adapter(make_casino: CasinoFactory, adapter: type[ReferenceAdapter]) -> Casino:
    """A casino whose CMS profile reads the CMS's answers through `adapter`."""
    path = f"{adapter.__module__}:{adapter.__qualname__}"
    return make_casino(cms=replace(DEFAULT_CMS_PROFILE, base_url="http://cms.invalid",
                                   adapter=path))


# --- the CMS's answers and records -------------------------------------------------------


def test_a_funding_in_a_currency_the_egm_does_not_take_names_the_field_and_the_currency(
    client: FlaskClient, auth: dict[str, str],
) -> None:
    response = post(client, auth, funding("tx-eur", currency="EUR"))
    assert response.status_code == 422, response.get_data(as_text=True)
    problem = response.get_json()
    assert (problem["code"], problem["field"], problem["expected"]) == (
        "INVALID_AMOUNT", "currency", "USD")
    inquiry = client.get("/cws/v1/fundings/tx-eur", headers=auth).get_json()
    assert inquiry["response"] == problem  # the stored answer, replayed as it was


def test_an_egms_first_funding_is_audited_as_applied(
    app: Flask, client: FlaskClient, auth: dict[str, str],
) -> None:
    """On PostgreSQL the first funding of an EGM has no audit head to append to: the general
    path makes it, and its record is a FUNDING_APPLIED like the hot path's."""
    assert post(client, auth, funding("tx-first")).status_code == 201
    assert post(client, auth, funding("tx-second")).status_code == 201
    for subject, meter in (("tx-first", 2000), ("tx-second", 4000)):
        ((kind, payload),) = audit_payloads(app, subject)
        assert (kind, payload["transactionId"], payload["creditMeter"]) == (
            "FUNDING_APPLIED", subject, meter)
    with app.extensions["sim_cms"].db.read() as session:
        assert audit.verify_chain(session).ok


# --- what a payment's history says ---------------------------------------------------------


def test_with_refused_codes_kept_used_the_bank_refusal_still_names_its_reason(
    make_casino: CasinoFactory,
) -> None:
    casino = make_casino(tpas_release_qr_on_bank_refusal=False)
    view = casino.pay(casino.show_qr(), password="NotEnoughFunds")
    body = record(casino, view.payment_id)
    assert (body["status"], body["reason"]) == ("FAILED_VOIDED", "BANK_NOT_ENOUGH_FUNDS")
    assert detail(body, "BANK_REFUSED") == {"reason": "BANK_NOT_ENOUGH_FUNDS"}


class CodelessRejectionAdapter(ReferenceAdapter):
    """A partner adapter whose CMS's rejections carry no code (the decision, not its why)."""

    def post_funding(self, call: FundingCall) -> FundingResult:
        result = super().post_funding(call)
        if result.outcome == "REJECTED":
            return replace(result, code=None)
        return result


def test_a_cms_rejection_without_a_code_is_recorded_as_cms_rejected(
    make_casino: CasinoFactory,
) -> None:
    casino = with_adapter(make_casino, CodelessRejectionAdapter)
    casino.change_egm(state="IN_GAME")
    view = casino.pay(casino.show_qr())
    assert (view.status, view.reason) == ("REJECTED_VOIDED", "CMS_REJECTED")
    body = record(casino, view.payment_id)
    assert (body["status"], body["reason"]) == ("REJECTED_VOIDED", "CMS_REJECTED")
    rejected = detail(body, "REJECTED")
    assert (rejected["outcome"], rejected["httpStatus"], rejected["code"]) == (
        "REJECTED", 409, None)
    assert casino.meter() == 0


def test_a_404_to_a_funding_request_taken_as_unknown_keeps_its_code(
    make_casino: CasinoFactory,
) -> None:
    casino = with_adapter(make_casino, NotFoundOnPostAdapter)
    casino.fault(method="POST", path=FUNDINGS, action="status", status=404, times=1)
    view = casino.pay(casino.show_qr())
    assert view.status == "CREDITED", view
    unknown = detail(record(casino, view.payment_id), "FUNDING_UNKNOWN")
    assert (unknown["outcome"], unknown["httpStatus"], unknown["code"]) == (
        "UNKNOWN", 404, "FAULT_INJECTED")


# --- the bank step and the sweep -------------------------------------------------------------


def test_no_sweep_takes_a_payment_while_its_player_is_at_the_bank(
    make_casino: CasinoFactory, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new payment is leased for the longest the bank may take (`tpas_stale_after_s` plus
    the bank's longest wait): a sweep one second before that leaves it to the live request,
    which credits it."""
    casino = make_casino()
    code = casino.show_qr()
    bank_lease_s = casino.ctx.settings.tpas_stale_after_s + demo_bank.MAX_SLEEP_S
    created_at = casino.clock.now()
    authorize = demo_bank.authorize
    seen: list[tuple[Any, ...]] = []

    def slow_bank(*args: Any) -> demo_bank.BankResult:
        casino.clock.advance(bank_lease_s - 1)
        (payment,) = [p for p in casino.trustly.get("/_sim/payments", headers=ADMIN)
                      .get_json()["payments"] if p["qrCode"] == code]
        seen.append((payment["status"], payment["nextAttemptAt"], recover(casino)))
        return authorize(*args)

    monkeypatch.setattr(demo_bank, "authorize", slow_bank)
    view = casino.pay(code, username=unique_user())
    lease_end = created_at + timedelta(seconds=bank_lease_s)
    assert seen == [("CREATED", format_instant(lease_end), {"finished": 0, "open": 1})]
    assert view.status == "CREDITED", view
    assert "RECOVERED" not in kinds(record(casino, view.payment_id))
    assert casino.meter() == 2000


def test_a_bank_refusal_after_a_sweep_finished_the_payment_answers_the_sweeps_outcome(
    make_casino: CasinoFactory, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bank took longer than the payment's lease; a sweep meanwhile ended the payment
    (BANK_INCOMPLETE). The bank's late refusal changes nothing: the phone is told what the
    sweep decided, and the history holds no BANK_REFUSED."""
    casino = make_casino()
    code = casino.show_qr()
    bank_lease_s = casino.ctx.settings.tpas_stale_after_s + demo_bank.MAX_SLEEP_S
    authorize = demo_bank.authorize
    swept: list[dict[str, Any]] = []

    def bank_slower_than_its_lease(*args: Any) -> demo_bank.BankResult:
        casino.clock.advance(bank_lease_s)
        swept.append(recover(casino))
        return authorize(*args)

    monkeypatch.setattr(demo_bank, "authorize", bank_slower_than_its_lease)
    response = casino.trustly.post(f"/api/v1/scan/{code}/payments",
                                   json=pay_body(password="NotEnoughFunds"))
    assert swept == [{"finished": 1, "open": 0}]
    assert response.status_code == 201, response.get_data(as_text=True)
    answer = response.get_json()
    assert (answer["status"], answer["reason"]) == ("FAILED_VOIDED", "BANK_INCOMPLETE")
    body = record(casino, answer["paymentId"])
    assert kinds(body) == ["CREATED", "RECOVERY_LEASE", "RECOVERED"]
    assert casino.cms_fundings() == []


# --- the control API's page of payments -------------------------------------------------------


def listed_ids(casino: Casino, **query: Any) -> list[str]:
    """`GET /_sim/payments` with `query`: the payment ids, in the order listed."""
    response = casino.trustly.get("/_sim/payments", query_string=query, headers=ADMIN)
    assert response.status_code == 200, response.get_data(as_text=True)
    return [p["paymentId"] for p in response.get_json()["payments"]]


def test_the_control_api_lists_the_1000_oldest_payments_unless_asked_for_more(
    make_casino: CasinoFactory,
) -> None:
    casino = make_casino()
    code = casino.show_qr()
    made = []
    for _ in range(PAGE + 1):  # refused at the bank, the code handed back each time
        made.append(casino.pay(code, password="NotEnoughFunds").payment_id)
        casino.clock.advance(0.001)
    assert listed_ids(casino) == made[:PAGE]
    assert listed_ids(casino, limit=PAGE + 1) == made
    assert listed_ids(casino, limit=2) == made[:2]
