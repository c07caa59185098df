"""The /_sim control API: guarded by the admin token, thin views, errors as SimErrors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from simkit.clock import SystemClock, parse_instant
from simkit.control import ControlHooks, make_control_blueprint
from simkit.faults import FaultRule
from tests.unit.kernel_app import ADMIN_TOKEN, START, Kernel, make_kernel_app

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
RULE = {"method": "POST", "path": "/counter", "action": "status", "status": 503, "times": 2}


@pytest.fixture
def kernel(tmp_path: Path) -> Kernel:
    return make_kernel_app(tmp_path)


@pytest.fixture
def client(kernel: Kernel) -> httpx.Client:
    transport = httpx.WSGITransport(app=kernel.app)
    return httpx.Client(transport=transport, base_url="http://sim", headers=ADMIN)


def _clock_now(client: httpx.Client) -> Any:
    return parse_instant(client.get("/_sim/clock").json()["now"])


# --- the guard ----------------------------------------------------------------------------

BAD_AUTH = [
    pytest.param(None, id="no-header"),
    pytest.param(f"Basic {ADMIN_TOKEN}", id="wrong-scheme"),
    pytest.param("Bearer not-the-token", id="wrong-token"),
    pytest.param("Bearer", id="empty-token"),
]
MUTATIONS = [
    ("POST", "/_sim/reset", None),
    ("POST", "/_sim/clock", {"advance": 60}),
    ("POST", "/_sim/faults", RULE),
    ("DELETE", "/_sim/journal", None),
    ("POST", "/_sim/seed", {"egms": 3}),
    ("POST", "/_sim/poke", None),
    ("GET", "/_sim/state", None),
]


@pytest.mark.parametrize("authorization", BAD_AUTH)
@pytest.mark.parametrize(("method", "path", "body"), MUTATIONS)
def test_requests_without_the_admin_token_are_refused_and_change_nothing(
    kernel: Kernel, authorization: str | None, method: str, path: str, body: Any
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with httpx.Client(transport=httpx.WSGITransport(app=kernel.app), base_url="http://s") as anon:
        kernel.app.test_client().get("/ping")  # one journal entry that must survive
        response = anon.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="scanpay-control"'
    assert response.json()["code"] == "ADMIN_TOKEN_REQUIRED"
    assert kernel.clock.now() == START
    assert kernel.faults.list() == []
    assert len(kernel.journal.query()) == 1
    assert kernel.resets == [] and kernel.seeds == []


def test_the_control_api_is_a_plain_404_when_not_enabled(tmp_path: Path) -> None:
    kernel = make_kernel_app(tmp_path, control=False)
    response = kernel.app.test_client().post("/_sim/reset", headers=ADMIN)
    assert response.status_code == 404


def test_an_empty_admin_token_is_refused_at_build_time(kernel: Kernel) -> None:
    with pytest.raises(ValueError, match="admin token"):
        make_control_blueprint(admin_token="", clock=kernel.clock, journal=kernel.journal,
                               faults=kernel.faults, hooks=ControlHooks(reset=lambda: None))


def test_a_sims_own_control_route_works_with_the_token(client: httpx.Client) -> None:
    assert client.post("/_sim/poke").json() == {"poked": True}


# --- reset, seed, state -------------------------------------------------------------------

def test_reset_clears_journal_and_faults_runs_the_hook_and_keeps_the_clock(
    kernel: Kernel, client: httpx.Client
) -> None:
    client.post("/_sim/clock", json={"advance": 90})
    client.get("/ping")
    kernel.faults.add(FaultRule(path="/x", action="drop"))
    assert client.post("/_sim/reset").json() == {"reset": True}
    assert kernel.journal.query() == []
    assert kernel.faults.list() == []
    assert kernel.resets == [1]
    assert _clock_now(client) == START + timedelta(seconds=90)


def test_seed_passes_the_body_to_the_hook_and_returns_its_answer(
    kernel: Kernel, client: httpx.Client
) -> None:
    response = client.post("/_sim/seed", json={"egms": 3})
    assert response.json() == {"seeded": {"egms": 3}}
    assert kernel.seeds == [{"egms": 3}]


def test_seed_with_an_empty_body_seeds_defaults(kernel: Kernel, client: httpx.Client) -> None:
    assert client.post("/_sim/seed").status_code == 200
    assert kernel.seeds == [{}]


def test_seed_refuses_a_body_that_is_not_an_object(client: httpx.Client) -> None:
    response = client.post("/_sim/seed", json=[1, 2])
    assert (response.status_code, response.json()["code"]) == (400, "INVALID_REQUEST")


def test_seed_is_404_when_the_sim_has_no_seed_hook(tmp_path: Path) -> None:
    kernel = make_kernel_app(tmp_path, seed_hook=False)
    response = kernel.app.test_client().post("/_sim/seed", json={}, headers=ADMIN)
    assert response.status_code == 404


def test_state_joins_the_sims_dump_with_clock_and_faults(
    kernel: Kernel, client: httpx.Client
) -> None:
    client.post("/counter")
    state = client.get("/_sim/state").json()
    assert state["counter"] == 1
    assert state["clock"] == {"now": "2031-03-01T12:00:00.000Z", "controllable": True,
                              "frozen": True}
    assert state["faults"] == []


# --- clock ----------------------------------------------------------------------------------

def test_clock_reads_as_frozen_manual_time(client: httpx.Client) -> None:
    assert client.get("/_sim/clock").json() == {
        "now": "2031-03-01T12:00:00.000Z", "controllable": True, "frozen": True}


def test_advance_moves_the_clock_by_seconds(client: httpx.Client) -> None:
    shown = client.post("/_sim/clock", json={"advance": 301.5}).json()
    assert shown["now"] == "2031-03-01T12:05:01.500Z"
    assert client.post("/_sim/clock", json={"advance": -1.5}).json()["now"] == (
        "2031-03-01T12:05:00.000Z")


def test_set_freezes_the_clock_at_an_instant(client: httpx.Client) -> None:
    shown = client.post("/_sim/clock", json={"set": "2032-01-01T06:00:00+02:00"}).json()
    assert shown == {"now": "2032-01-01T04:00:00.000Z", "controllable": True, "frozen": True}


def test_resume_lets_the_clock_run_from_where_it_stood(client: httpx.Client) -> None:
    shown = client.post("/_sim/clock", json={"resume": True}).json()
    assert shown["frozen"] is False
    assert START <= parse_instant(shown["now"]) < START + timedelta(minutes=1)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"advance": 1, "set": "2031-01-01T00:00:00Z"},
        {"advance": "60"},
        {"advance": True},
        {"advance": 10 * 366 * 86_400 + 1},
        {"set": "yesterday"},
        {"set": 1700000000},
        {"resume": False},
        {"rewind": 5},
        [60],
    ],
)
def test_bad_clock_moves_are_refused_and_leave_the_clock_alone(
    client: httpx.Client, body: Any
) -> None:
    response = client.post("/_sim/clock", json=body)
    assert (response.status_code, response.json()["code"]) == (400, "INVALID_REQUEST")
    assert _clock_now(client) == START


@pytest.mark.parametrize("raw", [b"", b"{not json", b'{"advance": NaN}', b'{"advance": Infinity}'])
def test_clock_bodies_that_are_not_json_are_refused(client: httpx.Client, raw: bytes) -> None:
    response = client.post("/_sim/clock", content=raw,
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert _clock_now(client) == START


def test_a_system_clock_cannot_be_moved(tmp_path: Path) -> None:
    kernel = make_kernel_app(tmp_path, clock=SystemClock())
    with httpx.Client(transport=httpx.WSGITransport(app=kernel.app), base_url="http://s",
                      headers=ADMIN) as client:
        shown = client.get("/_sim/clock").json()
        response = client.post("/_sim/clock", json={"advance": 60})
    assert (shown["controllable"], shown["frozen"]) == (False, None)
    assert (response.status_code, response.json()["code"]) == (409, "CLOCK_NOT_CONTROLLABLE")


# --- journal --------------------------------------------------------------------------------

def test_journal_is_queried_by_path_correlation_id_since_and_limit(client: httpx.Client) -> None:
    client.get("/ping", headers={"X-Correlation-Id": "flow-1"})
    client.post("/counter", headers={"X-Correlation-Id": "flow-1"})
    client.get("/counter", headers={"X-Correlation-Id": "flow-2"})
    everything = client.get("/_sim/journal").json()["entries"]
    assert [e["path"] for e in everything] == ["/ping", "/counter", "/counter"]
    by_id = client.get("/_sim/journal", params={"correlationId": "flow-1"}).json()["entries"]
    assert [e["path"] for e in by_id] == ["/ping", "/counter"]
    by_path = client.get("/_sim/journal", params={"path": "/counter"}).json()["entries"]
    assert [e["correlationId"] for e in by_path] == ["flow-1", "flow-2"]
    since = client.get("/_sim/journal", params={"since": everything[0]["id"], "limit": 1})
    assert [e["id"] for e in since.json()["entries"]] == [everything[1]["id"]]


@pytest.mark.parametrize("params", [{"since": "-1"}, {"since": "x"}, {"limit": "0"},
                                    {"limit": "100000"}])
def test_bad_journal_parameters_are_refused(client: httpx.Client, params: dict[str, str]) -> None:
    assert client.get("/_sim/journal", params=params).status_code == 400


def test_journal_can_be_cleared(client: httpx.Client) -> None:
    client.get("/ping")
    assert client.delete("/_sim/journal").json() == {"deleted": 1}
    assert client.get("/_sim/journal").json() == {"entries": []}


# --- faults ---------------------------------------------------------------------------------

def test_a_declared_fault_is_listed_with_its_id_and_fires(client: httpx.Client) -> None:
    created = client.post("/_sim/faults", json=RULE)
    assert created.status_code == 201
    (rule,) = created.json()["faults"]
    assert {k: rule[k] for k in ("method", "path", "action", "status")} == {
        "method": "POST", "path": "/counter", "action": "status", "status": 503}
    assert (rule["remaining"], rule["fired"]) == (2, 0)
    assert client.post("/counter").status_code == 503
    (listed,) = client.get("/_sim/faults").json()["faults"]
    assert (listed["id"], listed["remaining"], listed["fired"]) == (rule["id"], 1, 1)


def test_several_faults_are_declared_in_one_request(client: httpx.Client) -> None:
    body = {"faults": [RULE, {"path": "/ping", "action": "delay", "delayMs": 5}]}
    created = client.post("/_sim/faults", json=body).json()["faults"]
    assert [r["action"] for r in created] == ["status", "delay"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"path": "/x", "action": "explode"}, "action must be one of"),
        ({"faults": [RULE, {"path": "/x"}]}, "faults[1]: action must be one of"),
        ({"faults": []}, "list of 1 to"),
        ({"faults": [RULE], "extra": 1}, "sent alone"),
        ("drop", "JSON object"),
    ],
)
def test_bad_fault_plans_are_refused_whole(
    client: httpx.Client, body: Any, message: str
) -> None:
    response = client.post("/_sim/faults", json=body)
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert client.get("/_sim/faults").json() == {"faults": []}


def test_one_fault_is_removed_by_id_and_unknown_ids_are_404(client: httpx.Client) -> None:
    rule_id = client.post("/_sim/faults", json=RULE).json()["faults"][0]["id"]
    assert client.delete(f"/_sim/faults/{rule_id}").json() == {"deleted": 1}
    missing = client.delete(f"/_sim/faults/{rule_id}")
    assert (missing.status_code, missing.json()["code"]) == (404, "FAULT_NOT_FOUND")


def test_all_faults_are_removed_at_once(client: httpx.Client) -> None:
    client.post("/_sim/faults", json={"faults": [RULE, RULE]})
    assert client.delete("/_sim/faults").json() == {"deleted": 2}
    assert client.post("/counter").status_code == 201


def test_control_errors_are_rendered_by_the_apps_own_handler(client: httpx.Client) -> None:
    response = client.post("/_sim/clock", json={})
    assert set(response.json()) == {"code", "message"}  # the test app's dialect
