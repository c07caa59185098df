"""Two money rules of TPAS that only show when two actors meet over one payment.

- **No give-up while a request may be in flight.** TPAS gives up on a payment (voids it at
  the bank) only when the CMS says it never saw the transactionId *and* no funding request
  of ours can still reach the CMS. A request sent a moment ago, held up on its way, must
  not find the payment voided when it lands and credits the EGM.
- **A finished payment never changes state.** Every state change is a compare-and-set on
  the status; an actor that acts on what it read before another actor finished the payment
  (a late bank approval, a late limits answer) must leave the finished payment as it is.

Both are checked as the player and the casino see them: the payment's status and history
at TPAS, the EGM's credit meter and ledger at the CMS, and reconciliation between the two.
The races are planted with the injected clock and a network that holds requests back; no
test sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from sim_trustly.microsite import demo_bank
from sim_trustly.tpas import payments, state_machine
from simkit.faults import ConnectionDropped
from simkit.money import MinorUnits
from tests.api.tpas_support import Casino, CasinoFactory, make_casino, unique_user

pytestmark = pytest.mark.db
__all__ = ["make_casino"]  # the fixture, used by name

FUNDINGS = "/cws/v1/fundings"
LIMITS = "/cws/v1/limits/"
AMOUNT = 2000
WSGIApp = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True)
class HeldRequest:
    """A request the network took from TPAS and has not yet handed to the CMS."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class SlowNetwork:
    """The network in front of the CMS: it can hold funding requests back and deliver them
    late, and run another actor while a limits request is on its way.

    A held funding request reaches TPAS as a dropped connection (outcome unknown), exactly
    what TPAS sees of a request that is still travelling or still being processed.
    """

    app: WSGIApp
    hold_fundings: bool = False
    held: list[HeldRequest] = field(default_factory=list)
    on_limits: Callable[[], None] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        if self.hold_fundings and method == "POST" and path == FUNDINGS:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            headers = {key[5:].replace("_", "-").title(): value
                       for key, value in environ.items()
                       if key.startswith("HTTP_") and key not in ("HTTP_HOST",)}
            headers["Content-Type"] = environ.get("CONTENT_TYPE") or "application/json"
            self.held.append(HeldRequest(path, headers, environ["wsgi.input"].read(length)))
            raise ConnectionDropped("the request is still on its way to the CMS")
        if method == "GET" and path.startswith(LIMITS) and self.on_limits is not None:
            meanwhile, self.on_limits = self.on_limits, None  # once
            meanwhile()
        return self.app(environ, start_response)

    def deliver(self, casino: Casino) -> list[int]:
        """Let every held funding request reach the CMS now; the CMS's status codes."""
        self.hold_fundings = False
        statuses = [casino.cms.post(held.path, data=held.body, headers=held.headers).status_code
                    for held in self.held]
        self.held.clear()
        return statuses


def slow_network(casino: Casino) -> SlowNetwork:
    """Put a SlowNetwork between TPAS (and every test client) and the CMS."""
    network = SlowNetwork(casino.cms_app.wsgi_app)
    casino.cms_app.wsgi_app = network  # type: ignore[method-assign]
    return network


@pytest.fixture
def casino(make_casino: CasinoFactory) -> Casino:
    return make_casino()


def assert_money_consistent(casino: Casino, payment_id: str) -> payments.PaymentView:
    """Never "voided at the bank AND credited on the EGM", nor credited twice, nor lost.

    A payment still FUNDING may have been applied at the CMS already (TPAS has yet to
    learn it); a finished one must agree with the EGM and reconcile.
    """
    view = casino.status(payment_id)
    voided = "BANK_VOIDED" in casino.events(payment_id)
    meter, ledger = casino.meter(), casino.ledger()
    assert not (voided and meter > 0), (view, casino.events(payment_id), meter)
    assert meter in (0, AMOUNT) and ledger["appliedTotal"] == meter and ledger["balanced"]
    if view.status == "FUNDING":
        assert not voided, view
        return view
    assert (view.status == "CREDITED") == (meter == AMOUNT), (view, meter)
    assert not voided or view.status.endswith("_VOIDED"), (view, casino.events(payment_id))
    report = casino.reconciliation()
    assert report["reconciled"], report
    return view


def fund_into_silence(casino: Casino) -> payments.PaymentView:
    """A payment whose every funding request failed (503): TPAS keeps it in FUNDING."""
    code = casino.show_qr()
    casino.fault(method="POST", path=FUNDINGS, action="status", status=503)
    view = casino.pay(code, AMOUNT)
    assert view.status == "FUNDING"
    casino.clear_faults()
    return view


def resend_just_before_give_up(casino: Casino) -> tuple[payments.PaymentView, SlowNetwork]:
    """The sweep's last resends, a second before the give-up age, all still on their way."""
    view = fund_into_silence(casino)
    network = slow_network(casino)
    network.hold_fundings = True
    casino.clock.advance(casino.ctx.settings.tpas_give_up_after_s - 1)
    state_machine.recover_payments(casino.ctx)
    assert network.held, "the sweep should have resent the funding"
    assert casino.status(view.payment_id).status == "FUNDING"
    assert casino.meter() == 0
    return view, network


# --- (a) no give-up while a funding request may be in flight ----------------------------------


def test_a_request_in_flight_at_the_give_up_age_credits_the_payment_not_a_voided_one(
    casino: Casino,
) -> None:
    view, network = resend_just_before_give_up(casino)
    # The sweep comes back after its backoff: the payment is past the give-up age and the
    # CMS has not seen the transactionId yet, but the last request left seconds ago.
    casino.clock.advance(casino.ctx.settings.cms.retries.backoff_cap_s)
    state_machine.recover_payments(casino.ctx)
    # The request lands now and the CMS applies it: the payment must not be voided.
    assert network.deliver(casino)[0] == 201
    assert casino.meter() == AMOUNT
    assert assert_money_consistent(casino, view.payment_id).status == "FUNDING"
    # The next pass learns it from the status inquiry and credits the payment.
    casino.clock.advance(casino.ctx.settings.tpas_lease_s)
    assert state_machine.recover_payments(casino.ctx) == 1
    final = assert_money_consistent(casino, view.payment_id)
    assert (final.status, final.credit_meter) == ("CREDITED", AMOUNT)


def test_a_live_payment_stolen_by_a_pass_over_all_is_not_voided_under_its_own_request(
    casino: Casino,
) -> None:
    view, network = resend_just_before_give_up(casino)
    # A pass over all open payments (`POST /_sim/payments/recover {"all": true}`) takes every
    # one over, leased or not, a few seconds on.
    casino.clock.advance(2)
    state_machine.recover_payments(casino.ctx, include_leased=True)
    assert network.deliver(casino)[0] == 201
    assert assert_money_consistent(casino, view.payment_id).status == "FUNDING"
    casino.clock.advance(casino.ctx.settings.tpas_lease_s)
    state_machine.recover_payments(casino.ctx)
    assert assert_money_consistent(casino, view.payment_id).status == "CREDITED"


def test_tpas_gives_up_once_its_last_request_can_no_longer_be_in_flight(
    casino: Casino,
) -> None:
    view, network = resend_just_before_give_up(casino)
    profile = casino.ctx.settings.cms
    in_flight_s = max(casino.ctx.settings.tpas_lease_s,
                      profile.connect_timeout_s + profile.read_timeout_s)
    # Passes that take the payment over whatever its lease, to find the edge to the second.
    casino.clock.advance(in_flight_s - 1)
    state_machine.recover_payments(casino.ctx, include_leased=True)
    assert casino.status(view.payment_id).status == "FUNDING"  # one second short
    casino.clock.advance(1)
    state_machine.recover_payments(casino.ctx, include_leased=True)
    final = assert_money_consistent(casino, view.payment_id)
    assert (final.status, final.reason) == ("FAILED_VOIDED", "CMS_UNREACHABLE")
    assert casino.meter() == 0
    network.held.clear()  # lost for good: nothing ever reached the CMS


# --- (b) a finished payment never changes state -----------------------------------------------


def test_a_late_bank_approval_does_not_revive_a_payment_the_sweep_ended(
    casino: Casino, monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = casino.show_qr()
    approve = demo_bank.authorize
    settings = casino.ctx.settings

    def bank_slower_than_the_lease(username: str, password: str, amount: MinorUnits,
                                   clock: Any) -> demo_bank.BankResult:
        # The bank step outlives its lease; the sweep declares it dead and ends the payment.
        casino.clock.advance(settings.tpas_stale_after_s + demo_bank.MAX_SLEEP_S)
        assert state_machine.recover_payments(casino.ctx) == 1
        return approve(username, password, amount, clock)

    monkeypatch.setattr("sim_trustly.microsite.demo_bank.authorize", bank_slower_than_the_lease)
    view = casino.pay(code, AMOUNT)
    assert (view.status, view.reason) == ("FAILED_VOIDED", "BANK_INCOMPLETE")
    assert casino.meter() == 0 and casino.cms_fundings() == []
    kinds = casino.events(view.payment_id)
    assert "BANK_AUTHORIZED" not in kinds and "FUNDING_SENT" not in kinds
    assert assert_money_consistent(casino, view.payment_id) == view


def test_a_late_limits_answer_does_not_void_a_payment_the_sweep_credited(
    casino: Casino,
) -> None:
    user = unique_user()
    casino.set_limit(user, AMOUNT)  # once credited, nothing of the limit is left
    code = casino.show_qr()
    network = slow_network(casino)

    def sweep_takes_over() -> None:
        # The limits request outlives the live request's lease; the sweep funds the payment.
        casino.clock.advance(casino.ctx.settings.tpas_lease_s)
        assert state_machine.recover_payments(casino.ctx) == 1

    network.on_limits = sweep_takes_over
    view = casino.pay(code, AMOUNT, username=user)
    # The live request's limits answer (nothing left today) came after the credit.
    assert (view.status, view.credit_meter) == ("CREDITED", AMOUNT)
    kinds = casino.events(view.payment_id)
    assert "BANK_VOIDED" not in kinds and view.reason is None
    assert kinds.count("CREDITED") == 1
    assert assert_money_consistent(casino, view.payment_id) == view
    assert casino.limit(user)["usedToday"] == AMOUNT


def test_the_in_flight_window_follows_the_merchants_own_cms_timeouts(
    make_casino: CasinoFactory,
) -> None:
    # This merchant's CMS may take 100 s to answer: longer than TPAS's lease.
    default = make_casino().ctx.settings.cms
    patient = replace(default, name="patient", read_timeout_s=100.0)
    casino = make_casino(cms_profiles={"demo-merchant": patient})
    view, network = resend_just_before_give_up(casino)
    in_flight_s = patient.connect_timeout_s + patient.read_timeout_s
    assert in_flight_s > casino.ctx.settings.tpas_lease_s
    casino.clock.advance(in_flight_s - 1)
    state_machine.recover_payments(casino.ctx, include_leased=True)
    assert network.deliver(casino)[0] == 201  # landed within the merchant's read timeout
    assert assert_money_consistent(casino, view.payment_id).status == "FUNDING"
    casino.clock.advance(1)
    state_machine.recover_payments(casino.ctx, include_leased=True)
    assert assert_money_consistent(casino, view.payment_id).status == "CREDITED"
