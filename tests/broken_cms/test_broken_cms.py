"""Sanity of the broken CMS itself: each planted defect shows, and with none it is sim_cms.

In-process (Flask test clients on fresh SQLite files, the suite's manual clock), so these
run in a few seconds; the acceptance test (`tests/e2e/test_certify_broken_cms.py`) runs the
same app as a real gunicorn process against `scanpay certify`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from harness.certify.results import ScenarioResult
from harness.certify.runner import run_scenario
from harness.certify.scenarios import CATALOGUE, by_id
from harness.certify.scenarios.context import RunState
from harness.targets import Target
from sim_cms.app import MIGRATIONS, create_app
from sim_cms.funding import api as funding_api
from sim_cms.settings import CmsSettings
from simkit.clock import ManualClock, format_instant, parse_instant
from tests.broken_cms.app import FUNDING_ENDPOINT, create_broken_app, plant_funding_view
from tests.broken_cms.defects import ENV_VAR, Defect, defects_from_env, parse_defects
from tests.broken_cms.inprocess import broken_target
from tests.broken_cms.rotation import ignoring_rotation
from tests.conftest import (
    ADMIN_TOKEN,
    DatabaseFactory,
    TrustlyFactory,
    cms_bearer,
    cms_test_clients,
)

pytestmark = pytest.mark.db

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EGM = "EGM-001"
AMOUNT = 2000
STATE_CODES = {"OFFLINE": (503, "EGM_OFFLINE"), "IN_GAME": (409, "EGM_BUSY"),
               "DOOR_OPEN": (409, "EGM_DOOR_OPEN"), "TILT": (409, "EGM_TILT")}


class Casino:
    """One CMS app driven the way TPAS and the harness drive it: CWS API and control API."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        self.auth = cms_bearer(self.client)
        self.qr: dict[str, str] = {}

    @property
    def clock(self) -> ManualClock:
        """The CMS's manual clock."""
        clock: ManualClock = self.app.extensions["sim_cms"].clock
        return clock

    def admin(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        """A control-API call; asserts its status."""
        response = self.client.open(path, method=method, headers=ADMIN, **kwargs)
        assert response.status_code == status, response.get_data(as_text=True)
        return response.get_json()

    def cws(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        """A CWS call with the TPAS token; asserts its status."""
        response = self.client.open(path, method=method, headers=self.auth, **kwargs)
        assert response.status_code == status, response.get_data(as_text=True)
        return response.get_json()

    def show_qr(self, egm_id: str = EGM) -> str:
        """Put a QR (valid for an hour) on the EGM through the control API."""
        code = f"qr-{egm_id}-{len(self.qr)}"
        expires = format_instant(self.clock.now() + timedelta(hours=1))
        self.admin("POST", f"/_sim/egms/{egm_id}/qr-display", 201,
                   json={"url": f"https://trustly.invalid/scan/{code}", "qrTokenId": code,
                         "expiresAt": expires})
        self.qr[egm_id] = code
        return code

    def body(self, tid: str, egm_id: str = EGM, ubai: str = "ubai-alice",
             amount: int = AMOUNT) -> dict[str, Any]:
        """A well-formed funding for `egm_id` with the QR it shows."""
        return {"transactionId": tid, "egmId": egm_id, "amount": amount, "currency": "USD",
                "ubai": ubai, "qrTokenId": self.qr.get(egm_id) or self.show_qr(egm_id)}

    def fund(self, tid: str, **fields: Any) -> Any:
        """POST a funding; the test client's response."""
        return self.client.post("/cws/v1/fundings", json=self.body(tid, **fields),
                                headers=self.auth)

    def meter(self, egm_id: str = EGM) -> int:
        """The EGM's credit meter."""
        return int(self.cws("GET", f"/cws/v1/egms/{egm_id}")["creditMeter"])

    def ledger(self) -> dict[str, Any]:
        """The ledger summary of the control API's state dump."""
        summary: dict[str, Any] = self.admin("GET", "/_sim/state")["ledger"]
        return summary

    def set_state(self, state: str, egm_id: str = EGM) -> None:
        """Change the EGM's state through the control API."""
        self.admin("POST", f"/_sim/egms/{egm_id}", json={"state": state})

    def screen_qr(self, egm_id: str = EGM) -> str | None:
        """The qrTokenId the EGM's screen shows now (after its lazy rotation check)."""
        response = self.client.get(f"/egm/{egm_id}/status.json")
        assert response.status_code == 200, response.get_data(as_text=True)
        token: str | None = response.get_json()["qrTokenId"]
        return token


Build = Callable[..., Casino]


@pytest.fixture
def build(databases: DatabaseFactory, clock: ManualClock,
          make_trustly: TrustlyFactory) -> Iterator[Build]:
    """Make a broken CMS with the named defects (`with_trustly`: an in-process sim_trustly)."""
    apps: list[Flask] = []

    def make(*defects: str, with_trustly: bool = False, product: bool = False) -> Casino:
        settings = CmsSettings(database_url=databases.migrated(MIGRATIONS, "cms"),
                               admin_token=ADMIN_TOKEN, clients=cms_test_clients())
        transport = httpx.WSGITransport(app=make_trustly()) if with_trustly else None
        if product:
            app = create_app(settings, clock=clock, trustly_transport=transport)
        else:
            app = create_broken_app(settings, parse_defects(defects), clock=clock,
                                    trustly_transport=transport)
        app.testing = True
        apps.append(app)
        return Casino(app)

    yield make
    for app in apps:
        app.extensions["sim_cms"].close()


# --- naming the defects ---------------------------------------------------------------------

def test_defects_are_named_in_a_comma_separated_list() -> None:
    assert parse_defects(" no-idempotency, ignores-rotation ,") == {
        Defect.NO_IDEMPOTENCY, Defect.IGNORES_ROTATION}
    assert defects_from_env({}) == frozenset()
    assert defects_from_env({ENV_VAR: "credits-offline-egm"}) == {Defect.CREDITS_OFFLINE_EGM}


def test_a_misspelt_defect_is_refused_rather_than_giving_a_correct_cms() -> None:
    with pytest.raises(ValueError, match="no-idempotence"):
        parse_defects("no-idempotence")


# --- with no defect it is the product -------------------------------------------------------

def test_without_defects_the_broken_cms_serves_the_products_own_funding_view(
    build: Build,
) -> None:
    casino = build()
    assert casino.app.view_functions[FUNDING_ENDPOINT] is funding_api.post_funding
    assert casino.app.extensions["broken_cms"] == frozenset()


def _states_script(casino: Casino) -> list[tuple[int, str | None, str]]:
    """`_script_idle`'s requests, then one funding per refusing EGM state."""
    answers = _script_idle(casino)
    for n, state in enumerate(STATE_CODES):
        casino.set_state(state)
        response = casino.fund(f"s-{n}")
        answers.append((response.status_code, response.headers.get("Idempotent-Replayed"),
                        response.get_data(as_text=True)))
    return answers


def _script_idle(casino: Casino) -> list[tuple[int, str | None, str]]:
    """Every decision an IDLE EGM can get: apply, replay, reuse, limits, QR, amount, 404."""
    casino.cws("PUT", "/cws/v1/limits/ubai-tight", 201, json={"dailyLimit": AMOUNT})
    casino.show_qr("EGM-002")
    requests = [casino.body("t-1"), casino.body("t-1"), casino.body("t-1", amount=1),
                casino.body("t-2", ubai="ubai-tight", egm_id="EGM-002"),
                casino.body("t-3", ubai="ubai-tight", egm_id="EGM-002"),
                {**casino.body("t-4"), "qrTokenId": "never-shown"},
                casino.body("t-5", amount=10_000_000), {**casino.body("t-6"), "currency": "EUR"},
                {**casino.body("t-7"), "egmId": "EGM-404"}]
    answers = []
    for body in requests:
        response = casino.client.post("/cws/v1/fundings", json=body, headers=casino.auth)
        answers.append((response.status_code, response.headers.get("Idempotent-Replayed"),
                        response.get_data(as_text=True)))
    return answers


def test_the_recomposed_funding_view_without_defects_answers_byte_for_byte_as_the_product(
    build: Build,
) -> None:
    product, recomposed = build(product=True), build()
    plant_funding_view(recomposed.app, frozenset())
    assert _states_script(recomposed) == _states_script(product)
    assert recomposed.ledger() == product.ledger()


# --- each defect, shown directly ------------------------------------------------------------

def test_no_idempotency_credits_a_replayed_funding_again(build: Build) -> None:
    casino = build("no-idempotency")
    first, again = casino.fund("dup-1"), casino.fund("dup-1")
    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers
    assert again.get_json()["transactionId"] == "dup-1"
    assert again.get_json()["creditMeter"] == 2 * AMOUNT
    assert casino.meter() == 2 * AMOUNT
    assert casino.ledger()["transactions"] == 2
    assert casino.cws("GET", "/cws/v1/fundings/dup-1")["status"] == "APPLIED"


def test_no_idempotency_credits_a_reused_key_with_another_body_too(build: Build) -> None:
    casino = build("no-idempotency")
    assert casino.fund("dup-2").status_code == 201
    assert casino.fund("dup-2", amount=1).status_code == 201
    assert casino.meter() == AMOUNT + 1


def test_the_product_replays_the_same_funding(build: Build) -> None:
    casino = build()
    assert casino.fund("dup-1").status_code == 201
    again = casino.fund("dup-1")
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true")
    assert casino.meter() == AMOUNT


def _race(casino: Casino, racers: int) -> list[int]:
    """`racers` fundings of AMOUNT on as many EGMs for one UBAI, released together."""
    ubai = "ubai-racing"
    casino.cws("PUT", f"/cws/v1/limits/{ubai}", 201, json={"dailyLimit": AMOUNT})
    egms = [f"EGM-00{n}" for n in range(1, racers + 1)]
    bodies = [casino.body(f"race-{egm}", egm_id=egm, ubai=ubai) for egm in egms]
    barrier, statuses = threading.Barrier(racers), [0] * racers

    def post(i: int) -> None:
        client = casino.app.test_client()
        barrier.wait(timeout=10)
        statuses[i] = client.post("/cws/v1/fundings", json=bodies[i],
                                  headers=casino.auth).status_code

    threads = [threading.Thread(target=post, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return sorted(statuses)


def test_limit_no_lock_lets_racing_fundings_exceed_the_daily_limit(build: Build) -> None:
    casino = build("limit-no-lock")
    statuses = _race(casino, racers=4)
    assert statuses.count(201) > 1, statuses
    view = casino.cws("GET", "/cws/v1/limits/ubai-racing")
    assert view["usedToday"] > view["dailyLimit"], view


def test_the_product_keeps_racing_fundings_under_the_daily_limit(build: Build) -> None:
    assert _race(build(), racers=4) == [201, 422, 422, 422]


def test_limit_no_lock_still_refuses_a_funding_that_arrives_alone_over_the_limit(
    build: Build,
) -> None:
    casino = build("limit-no-lock")
    casino.cws("PUT", "/cws/v1/limits/ubai-alice", 201, json={"dailyLimit": AMOUNT})
    assert casino.fund("one").status_code == 201
    over = casino.fund("two", egm_id="EGM-002")
    assert (over.status_code, over.get_json()["code"]) == (422, "DAILY_LIMIT_EXCEEDED")


def _rotation(casino: Casino) -> tuple[str, str | None, str | None]:
    """The QR forced at the start, shown just after `rotatesAt`, and just after expiry."""
    forced = casino.cws("POST", f"/cws/v1/egms/{EGM}/qr")
    clock = casino.clock
    clock.set(parse_instant(forced["rotatesAt"]) + timedelta(seconds=1))
    after_rotation = casino.screen_qr()
    clock.set(parse_instant(forced["expiresAt"]) + timedelta(seconds=1))
    return forced["qrTokenId"], after_rotation, casino.screen_qr()


def test_ignores_rotation_keeps_the_qr_past_rotates_at_and_replaces_it_only_at_expiry(
    build: Build,
) -> None:
    with ignoring_rotation():
        forced, after_rotation, after_expiry = _rotation(build(with_trustly=True))
    assert after_rotation == forced
    assert after_expiry not in (None, forced)


def test_the_product_rotates_the_qr_at_rotates_at(build: Build) -> None:
    forced, after_rotation, _ = _rotation(build(with_trustly=True))
    assert after_rotation not in (None, forced)


@pytest.mark.parametrize("state", sorted(STATE_CODES))
def test_wrong_error_codes_answers_every_egm_state_refusal_422_funding_rejected(
    build: Build, state: str,
) -> None:
    casino = build("wrong-error-codes")
    casino.show_qr()
    casino.set_state(state)
    response = casino.fund(f"state-{state}")
    assert (response.status_code, response.get_json()["code"]) == (422, "FUNDING_REJECTED")
    assert casino.meter() == 0


def test_wrong_error_codes_keeps_the_other_refusals_specific(build: Build) -> None:
    casino = build("wrong-error-codes")
    response = casino.client.post("/cws/v1/fundings", headers=casino.auth,
                                  json={**casino.body("qr"), "qrTokenId": "never-shown"})
    assert (response.status_code, response.get_json()["code"]) == (422, "QR_TOKEN_MISMATCH")


def test_credits_offline_egm_applies_a_funding_to_an_offline_egm(build: Build) -> None:
    casino = build("credits-offline-egm")
    casino.show_qr()
    casino.set_state("OFFLINE")
    assert casino.fund("offline").status_code == 201
    assert casino.meter() == AMOUNT
    assert casino.admin("GET", f"/_sim/egms/{EGM}")["state"] == "OFFLINE"
    assert casino.ledger()["balanced"] is True


def test_credits_offline_egm_still_refuses_the_other_states(build: Build) -> None:
    casino = build("credits-offline-egm")
    casino.show_qr()
    casino.set_state("TILT")
    response = casino.fund("tilt")
    assert (response.status_code, response.get_json()["code"]) == (409, "EGM_TILT")


def test_every_defect_at_once_still_serves_the_control_api(build: Build) -> None:
    casino = build(*(defect.value for defect in Defect))
    assert casino.admin("POST", "/_sim/reset") is not None
    assert casino.admin("GET", "/_sim/state")["ledger"]["balanced"] is True
    assert casino.app.extensions["broken_cms"] == frozenset(Defect)


# --- the new defects, shown directly --------------------------------------------------------

def _at_once(casino: Casino, bodies: list[dict[str, Any]]) -> list[Any]:
    """POST every body at the same moment (threads released by one barrier)."""
    barrier = threading.Barrier(len(bodies))
    answers: list[Any] = [None] * len(bodies)

    def post(i: int) -> None:
        client = casino.app.test_client()
        barrier.wait(timeout=10)
        answers[i] = client.post("/cws/v1/fundings", json=bodies[i], headers=casino.auth)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


def test_replay_outside_lock_credits_identical_fundings_that_arrive_together(
    build: Build,
) -> None:
    casino = build("replay-outside-lock")
    answers = _at_once(casino, [casino.body("twin")] * 4)
    assert [a.status_code for a in answers] == [201] * 4
    assert casino.meter() == 4 * AMOUNT


def test_replay_outside_lock_still_replays_a_retry_that_comes_after_the_answer(
    build: Build,
) -> None:
    casino = build("replay-outside-lock")
    assert casino.fund("later").status_code == 201
    again = casino.fund("later")
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true")
    reused = casino.fund("later", amount=1)
    assert (reused.status_code, reused.get_json()["code"]) == (422, "IDEMPOTENCY_KEY_REUSED")
    assert casino.meter() == AMOUNT


def test_the_product_applies_identical_fundings_that_arrive_together_once(
    build: Build,
) -> None:
    casino = build()
    answers = _at_once(casino, [casino.body("twin")] * 4)
    assert sorted(a.headers.get("Idempotent-Replayed") or "" for a in answers) == [
        "", "true", "true", "true"]
    assert casino.meter() == AMOUNT


def test_slow_answer_still_refuses_a_known_transaction_id_with_another_body(
    build: Build,
) -> None:
    casino = build("slow-answer")
    assert casino.fund("known").status_code == 201
    reused = casino.fund("known", egm_id="EGM-002")
    assert (reused.status_code, reused.get_json()["code"]) == (422, "IDEMPOTENCY_KEY_REUSED")
    assert (casino.meter(), casino.meter("EGM-002")) == (AMOUNT, 0)


def test_slow_answer_credits_a_retry_sent_while_the_first_answer_is_late(build: Build) -> None:
    casino = build("slow-answer")
    answers = _at_once(casino, [casino.body("late")] * 2)  # the retry overlaps the slow answer
    assert [a.status_code for a in answers] == [201, 201]
    assert casino.meter() == 2 * AMOUNT
    assert casino.cws("GET", "/cws/v1/fundings/late")["status"] == "APPLIED"
    replay = casino.fund("late")  # once answered, the outcome is stored: a replay
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert casino.meter() == 2 * AMOUNT


# --- each defect caught by the catalogue (in process, through certify's own runner) ---------

# defect -> {scenario that must fail: words its reason must hold (the money effect first)}
CAUGHT: dict[Defect, dict[str, str]] = {
    Defect.REPLAY_OUTSIDE_LOCK: {"FUND-009": "observed +13600 (8x the amount)",
                                 "FUND-010": "observed +1800 (2x the amount)"},
    Defect.SLOW_ANSWER: {"FUND-011": "observed +2800 (2x the amount)",
                         "FUND-009": "observed +13600 (8x the amount)"},
    Defect.NO_IDEMPOTENCY: {"FUND-001": "observed +2200 (2x the amount)",
                            "FUND-009": "observed +13600 (8x the amount)",
                            "FUND-011": "observed +2800 (2x the amount)"},
    Defect.LIMIT_NO_LOCK: {"LIM-005": "expected +1000 (1x the amount), observed +"},
    Defect.IGNORES_ROTATION: {"SCAN-004": "a new QR before the old one expires",
                              "SCAN-005": "the EGM shows another code after the rotation"},
    Defect.WRONG_ERROR_CODES: {"EGM-001": "EGM_BUSY"},
    Defect.CREDITS_OFFLINE_EGM: {"EGM-004": "observed +1000 (2x the amount)"},
    Defect.MANY_FUNDINGS_PER_QR: {"QR-001": "observed +1600 (2x the amount)"},
    Defect.NO_REPLACEMENT_AFTER_USE: {"QR-003": "a different url, observed no QR on screen"},
    Defect.ACCEPTS_EXPIRED_QR: {"QR-002": "expected +0 (unchanged), observed +700 (1x the "
                                          "amount)"},
}


def _run(target: Target, scenario_id: str) -> ScenarioResult:
    return run_scenario(target, by_id()[scenario_id], RunState(f"t{scenario_id[-3:]}"))


@pytest.mark.parametrize("defect", sorted(CAUGHT), ids=str)
def test_each_planted_defect_is_caught_and_the_reason_names_its_effect(
    defect: Defect, tmp_path: Path,
) -> None:
    with broken_target(frozenset({defect}), tmp_path) as target:
        results = {scenario_id: _run(target, scenario_id) for scenario_id in CAUGHT[defect]}
    for scenario_id, words in CAUGHT[defect].items():
        result = results[scenario_id]
        assert result.outcome == "failed", (scenario_id, result.outcome, result.reason)
        assert words in result.reason, (scenario_id, result.reason)


def test_the_whole_run_reconciliation_finds_the_credits_no_transaction_id_explains(
    tmp_path: Path,
) -> None:
    with broken_target(frozenset({Defect.NO_IDEMPOTENCY}), tmp_path) as target:
        state = RunState("rec")
        fund_001, rec_002 = (run_scenario(target, by_id()[i], state)
                             for i in ("FUND-001", "REC-002"))
    assert fund_001.outcome == "failed"
    assert rec_002.outcome == "failed"
    assert "expected +1100, observed +2200 (+1100 that no funding of this run explains)" in \
        rec_002.reason


def test_every_planted_defect_has_a_catching_scenario() -> None:
    assert set(CAUGHT) == set(Defect)


def test_no_scenario_fails_on_the_correct_cms(tmp_path: Path) -> None:
    with broken_target(frozenset(), tmp_path) as target:
        state = RunState("ok", since=format_instant(target.earliest_now()))
        results = [run_scenario(target, item, state) for item in CATALOGUE]
    bad = {r.id: (r.outcome, r.reason) for r in results if r.outcome != "passed"}
    assert bad == {}


def test_without_an_acquire_qr_path_each_payment_gets_a_qr_the_run_has_not_used(
    tmp_path: Path,
) -> None:
    """The screen is read instead: the spent QR is rotated away (clock hook) before reuse,
    rather than the scenario erroring with Trustly's QR_CODE_USED."""
    with broken_target(frozenset(), tmp_path) as target:
        screen_only = replace(target, egm_paths=replace(target.egm_paths, acquire_qr=None))
        state = RunState("scr", since=format_instant(target.earliest_now()))
        results = [run_scenario(screen_only, by_id()[i], state)
                   for i in ("LIM-003", "REC-001", "LIM-002", "REC-002")]
    assert {r.id: (r.outcome, r.reason) for r in results if r.outcome != "passed"} == {}
