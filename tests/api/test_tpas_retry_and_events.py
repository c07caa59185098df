"""How often one live payment request tries the CMS, who may work on the payment meanwhile,
and what its history (`GET /_sim/payments/<id>`) says about every try.

A CMS that answers only the profile's last allowed attempt still credits within the
player's request; a payment the sweep took over and finished while the live request was
asking the CMS is answered with the sweep's outcome; while a resend is on its way no sweep
may take the payment. The pay endpoint's own refusals (credential lengths, a body that is
not an object) and a code forgotten by a reset between its read and its claim are here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from sim_trustly.cms_client.adapters import profile_for
from sim_trustly.cms_client.partner_profiles import DEFAULT_CMS_PROFILE
from sim_trustly.cms_client.protocol import FundingCall, FundingResult
from sim_trustly.cms_client.reference_adapter import ReferenceAdapter
from sim_trustly.tpas import redemption, state_machine
from sim_trustly.tpas.redemption import QrCodeUnknown
from sim_trustly.tpas.state_machine import MAX_CREDENTIAL_CHARS
from simkit.clock import format_instant
from tests.api.test_tpas_payment_records import detail, kinds, record
from tests.api.test_tpas_recovery_records import pay_other, two_merchants
from tests.api.tpas_support import ADMIN, Casino, CasinoFactory, make_casino, unique_user

pytestmark = pytest.mark.db
__all__ = ["make_casino"]  # the fixture, used by name

FUNDINGS = "/cws/v1/fundings"
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@pytest.fixture
def casino(make_casino: CasinoFactory) -> Casino:
    return make_casino()


def details(body: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """Every `kind` event's detail in the payment's history, oldest first."""
    return [event["detail"] for event in body["events"] if event["kind"] == kind]


def the_payment(casino: Casino) -> dict[str, Any]:
    """The one payment TPAS holds, as the control API lists it."""
    response = casino.trustly.get("/_sim/payments", headers=ADMIN)
    assert response.status_code == 200, response.get_data(as_text=True)
    (payment,) = response.get_json()["payments"]
    return payment  # type: ignore[no-any-return]


def recover(casino: Casino) -> dict[str, Any]:
    """`POST /_sim/payments/recover` (leases respected): one pass now; its counts."""
    response = casino.trustly.post("/_sim/payments/recover", json={}, headers=ADMIN)
    assert response.status_code == 200, response.get_data(as_text=True)
    counts: dict[str, Any] = response.get_json()
    return counts


def on_cms_request(casino: Casino, method: str, path_prefix: str, nth: int,
                   before: Callable[[], object] | None = None,
                   after: Callable[[], object] | None = None) -> None:
    """Run `before` as the CMS receives its `nth` `method` request under `path_prefix`
    (before handling it), `after` once it has answered it (before TPAS reads the answer):
    what another worker does at that moment. Later requests pass untouched."""
    inner: WsgiApp = casino.cms_app.wsgi_app
    seen = [0]

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] != method or \
                not str(environ["PATH_INFO"]).startswith(path_prefix):
            return inner(environ, start_response)
        seen[0] += 1
        if seen[0] != nth:
            return inner(environ, start_response)
        if before is not None:
            before()
        answer = inner(environ, start_response)
        body = list(answer)
        close = getattr(answer, "close", None)
        if close is not None:
            close()
        if after is not None:
            after()
        return body

    casino.cms_app.wsgi_app = app  # type: ignore[method-assign]


# --- how many tries one request makes ----------------------------------------------------


def test_a_cms_that_answers_only_the_last_allowed_try_credits_within_the_request(
    casino: Casino,
) -> None:
    """The profile allows `max_attempts` tries after the first send: a CMS that fails all but
    the last one still credits before the player's request returns, with no extra inquiry
    after the answer that decided it. Its history says what each try was and what it got."""
    retries = profile_for(casino.ctx.settings, "demo-merchant").retries
    failures = retries.max_attempts
    user = unique_user()
    casino.set_limit(user, 50_000)
    code = casino.show_qr()
    casino.fault(method="POST", path=FUNDINGS, action="status", status=503, times=failures)
    view = casino.pay(code, username=user)
    assert view.status == "CREDITED", view
    assert casino.meter() == 2000
    assert [f["outcome"] for f in casino.cms_fundings()] == ["APPLIED"]
    body = record(casino, view.payment_id)
    assert (body["status"], body["attempts"]) == ("CREDITED", failures + 1)
    assert kinds(body) == ["CREATED", "BANK_AUTHORIZED", "LIMIT_CHECKED", "FUNDING_SENT",
                           *["FUNDING_UNKNOWN", "INQUIRY", "FUNDING_SENT"] * failures,
                           "CREDITED"]
    assert detail(body, "CREATED") == {"qrCode": code, "transactionId": body["transactionId"],
                                       "amount": 2000, "currency": "USD"}
    assert details(body, "FUNDING_SENT") == [{"attempt": 1}, *[{"resend": True}] * failures]
    assert detail(body, "LIMIT_CHECKED") == {"outcome": "OK", "remaining": 50_000,
                                             "dailyLimit": 50_000, "detail": ""}
    unknown = details(body, "FUNDING_UNKNOWN")
    assert len(unknown) == failures
    for each in unknown:
        assert set(each) == {"outcome", "httpStatus", "code", "creditMeter", "detail"}
        assert (each["outcome"], each["httpStatus"], each["creditMeter"]) == \
            ("UNKNOWN", 503, None)
        assert "503" in each["detail"]
    assert all(each == {"outcome": "NOT_FOUND", "httpStatus": 404, "code": "FUNDING_NOT_FOUND",
                        "creditMeter": None, "detail": ""}
               for each in details(body, "INQUIRY"))
    assert detail(body, "CREDITED") == {"outcome": "APPLIED", "httpStatus": 201, "code": None,
                                        "creditMeter": 2000, "detail": ""}


class NotFoundOnPostAdapter(ReferenceAdapter):
    """A partner adapter that reports a 404 answer to `POST fundings` as NOT_FOUND (an
    answer the CmsAdapter protocol gives only to an inquiry)."""

    def post_funding(self, call: FundingCall) -> FundingResult:
        result = super().post_funding(call)
        if result.http_status == 404:
            return FundingResult("NOT_FOUND", http_status=404, code=result.code,
                                 detail=result.detail)
        return result


def test_a_not_found_answer_to_a_funding_request_is_taken_as_unknown(
    make_casino: CasinoFactory,
) -> None:
    """NOT_FOUND says nothing about a request just sent: TPAS notes it as UNKNOWN, asks, and
    resends the same transactionId, which credits once."""
    profile = replace(DEFAULT_CMS_PROFILE, base_url="http://cms.invalid",
                      adapter=f"{__name__}:NotFoundOnPostAdapter")
    casino = make_casino(cms=profile)
    code = casino.show_qr()
    casino.fault(method="POST", path=FUNDINGS, action="status", status=404, times=1)
    view = casino.pay(code)
    assert view.status == "CREDITED", view
    assert casino.meter() == 2000
    body = record(casino, view.payment_id)
    unknown = detail(body, "FUNDING_UNKNOWN")
    assert (unknown["outcome"], unknown["httpStatus"]) == ("UNKNOWN", 404)
    assert kinds(body).count("FUNDING_SENT") == 2


# --- who works on the payment meanwhile ----------------------------------------------------


def test_a_live_request_answers_the_outcome_of_a_sweep_that_took_its_payment_over(
    casino: Casino,
) -> None:
    """The live request's first send went unanswered and it stalled past its lease while
    asking the CMS; a sweep took the payment over and credited it. The live request then
    finds the payment no longer its own: it sends nothing more and answers CREDITED."""
    code = casino.show_qr()
    casino.fault(method="POST", path=FUNDINGS, action="status", status=503, times=1)
    swept: list[dict[str, Any]] = []

    def stall_then_sweep() -> None:
        casino.clock.advance(casino.ctx.settings.tpas_lease_s + 1)
        swept.append(recover(casino))

    on_cms_request(casino, "GET", f"{FUNDINGS}/", 1, after=stall_then_sweep)
    view = casino.pay(code)
    assert swept == [{"finished": 1, "open": 0}]
    assert view.status == "CREDITED", view
    assert view.credit_meter == 2000
    assert casino.meter() == 2000
    assert [f["outcome"] for f in casino.cms_fundings()] == ["APPLIED"]
    body = record(casino, view.payment_id)
    assert details(body, "FUNDING_SENT") == [{"attempt": 1}, {"resend": True}]  # the sweep's
    assert kinds(body)[-1] == "INQUIRY"  # the live request's answer, read after the sweep
    assert (body["status"], body["attempts"]) == ("CREDITED", 2)


def test_no_sweep_takes_a_payment_while_its_resend_is_on_its_way(casino: Casino) -> None:
    """A resend leases the payment anew for `tpas_lease_s` from when it is sent. The first
    send's answer took 45 s, so the lease the first send took ends while the resend is still
    with the CMS; a sweep that runs 30 s into the resend finds nothing due and leaves the
    payment to the live request."""
    lease_s = casino.ctx.settings.tpas_lease_s
    code = casino.show_qr()
    casino.fault(method="POST", path=FUNDINGS, action="status", status=503, times=1)
    seen: list[tuple[Any, ...]] = []

    def sweep_30_s_in() -> None:
        casino.clock.advance(30)
        payment = the_payment(casino)
        seen.append((payment["status"], payment["nextAttemptAt"], recover(casino)))

    on_cms_request(casino, "POST", FUNDINGS, 1, after=lambda: casino.clock.advance(45))
    on_cms_request(casino, "POST", FUNDINGS, 2, before=sweep_30_s_in)
    sent_at = casino.clock.now()
    view = casino.pay(code)
    resent_at = sent_at + timedelta(seconds=45)
    assert sent_at + timedelta(seconds=lease_s) < resent_at + timedelta(seconds=30)
    lease_end = resent_at + timedelta(seconds=lease_s)
    assert seen == [("FUNDING", format_instant(lease_end), {"finished": 0, "open": 1})]
    assert view.status == "CREDITED", view
    body = record(casino, view.payment_id)
    assert "RECOVERY_LEASE" not in kinds(body)
    assert details(body, "FUNDING_SENT") == [{"attempt": 1}, {"resend": True}]
    assert casino.meter() == 2000


# --- the pay endpoint's refusals -------------------------------------------------------------


def pay_body(username: str = "alice", password: str = "pw") -> dict[str, Any]:
    return {"amount": 2000, "currency": "USD",
            "bank": {"username": username, "password": password}}


def test_credentials_of_the_longest_allowed_length_pay(casino: Casino) -> None:
    longest = "u" * MAX_CREDENTIAL_CHARS
    response = casino.trustly.post(f"/api/v1/scan/{casino.show_qr()}/payments",
                                   json=pay_body(username=longest, password=longest))
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["status"] == "CREDITED"
    assert casino.meter() == 2000


@pytest.mark.parametrize("field", ["username", "password"])
def test_a_credential_one_character_too_long_is_refused_naming_it(
    casino: Casino, field: str,
) -> None:
    code = casino.show_qr()
    response = casino.trustly.post(
        f"/api/v1/scan/{code}/payments",
        json=pay_body(**{field: "x" * (MAX_CREDENTIAL_CHARS + 1)}))
    assert response.status_code == 400, response.get_data(as_text=True)
    (error,) = response.get_json()["errors"]
    assert (error["reason"], error["field"]) == ("INVALID_FIELD", f"bank.{field}")
    assert str(MAX_CREDENTIAL_CHARS) in error["message"]
    assert casino.trustly.get(f"/api/v1/scan/{code}").get_json()["state"] == "ACTIVE"


@pytest.mark.parametrize("payload", [[], "x", 7], ids=["array", "string", "number"])
def test_a_body_that_is_not_an_object_is_refused_saying_so(casino: Casino, payload: Any) -> None:
    code = casino.show_qr()
    response = casino.trustly.post(f"/api/v1/scan/{code}/payments", json=payload)
    assert response.status_code == 400, response.get_data(as_text=True)
    (error,) = response.get_json()["errors"]
    assert error["reason"] == "INVALID_REQUEST"
    assert error["message"] == "the body must be a JSON object"


def test_a_code_forgotten_between_its_read_and_its_claim_is_unknown(
    casino: Casino, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reset of sim_trustly lands after the payment read the code but before it claimed
    it: the claim matches nothing, and the player is told the code is unknown (404), as a
    scan after the reset would be; nothing is stored or sent."""
    code = casino.show_qr()
    read = redemption.presentable

    def read_then_reset(*args: Any) -> redemption.PresentedToken:
        token = read(*args)
        assert casino.trustly.post("/_sim/reset", headers=ADMIN).status_code == 200
        return token

    monkeypatch.setattr(redemption, "presentable", read_then_reset)
    with pytest.raises(QrCodeUnknown) as refused:
        casino.pay(code)
    assert refused.value.http_status == 404
    response = casino.trustly.get("/_sim/payments", headers=ADMIN)
    assert response.get_json()["payments"] == []
    assert casino.cms_fundings() == []


def test_an_unknown_payment_id_is_404_saying_there_is_no_such_payment(casino: Casino) -> None:
    response = casino.trustly.get(f"/api/v1/payments/{'0' * 32}")
    assert response.status_code == 404, response.get_data(as_text=True)
    (error,) = response.get_json()["errors"]
    assert (error["reason"], error["message"]) == ("PAYMENT_NOT_FOUND", "no such payment")


def test_a_payment_the_pass_cannot_carry_on_is_named_in_the_log(
    make_casino: CasinoFactory, caplog: pytest.LogCaptureFixture,
) -> None:
    """A broken partner adapter fails its payment's recovery; the pass goes on, and the
    operator's log names the payment that failed."""
    casino = two_merchants(make_casino)
    broken = pay_other(casino)
    casino.clock.advance(casino.ctx.settings.tpas_lease_s)
    with caplog.at_level("ERROR", logger=state_machine.__name__):
        assert state_machine.recover_payments(casino.ctx) == 0
    assert [r.getMessage() for r in caplog.records if r.name == state_machine.__name__] == \
        [f"recovery of payment {broken} failed"]
