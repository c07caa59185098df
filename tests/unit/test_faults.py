"""Fault plans: declared as data, fired at one point per request, budgets never overspent."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from simkit import faults
from simkit.clock import monotonic
from simkit.errors import BadRequest
from simkit.faults import ConnectionDropped, FaultPlan, FaultRule
from simkit.wait import poll_until
from tests.unit.kernel_app import Kernel, make_database, make_kernel_app, serve


@pytest.fixture
def kernel(tmp_path: Path) -> Kernel:
    return make_kernel_app(tmp_path)


@pytest.fixture
def client(kernel: Kernel) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=kernel.app), base_url="http://sim")


def _rule(**fields: Any) -> FaultRule:
    return FaultRule.from_json({"path": "/counter", **fields})


# --- declaring rules ----------------------------------------------------------------------

def test_a_rule_round_trips_through_json() -> None:
    data = {"method": "POST", "path": "/cws/v1/fundings", "action": "apply_then_drop",
            "status": None, "delayMs": 0, "probability": 0.5, "times": 3}
    assert FaultRule.from_json(data).to_json() == data


def test_defaults_match_every_method_always_and_without_limit() -> None:
    rule = FaultRule.from_json({"path": "/x", "action": "drop"})
    assert (rule.method, rule.probability, rule.times) == ("*", 1.0, None)


def test_delay_is_accepted_in_snake_case_too() -> None:
    assert FaultRule.from_json({"path": "/x", "action": "delay", "delay_ms": 5}).delay_ms == 5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "JSON object"),
        ({"path": "/x"}, "action must be one of"),
        ({"path": "/x", "action": "explode"}, "action must be one of"),
        ({"action": "drop"}, "path must be"),
        ({"path": "x", "action": "drop"}, "path must be"),
        ({"path": "/a*b", "action": "drop"}, "last character"),
        ({"path": "/_sim/reset", "action": "drop"}, "never faulted"),
        ({"path": "/x", "action": "drop", "method": "FETCH"}, "method must be"),
        ({"path": "/x", "action": "status"}, "status between 400 and 599"),
        ({"path": "/x", "action": "status", "status": 200}, "status between 400 and 599"),
        ({"path": "/x", "action": "status", "status": "503"}, "status between 400 and 599"),
        ({"path": "/x", "action": "drop", "status": 503}, "only to action 'status'"),
        ({"path": "/x", "action": "delay"}, "delayMs between"),
        ({"path": "/x", "action": "delay", "delayMs": 10**9}, "delayMs between"),
        ({"path": "/x", "action": "drop", "delayMs": 5}, "only to action 'delay'"),
        ({"path": "/x", "action": "drop", "probability": 0}, "0 < probability <= 1"),
        ({"path": "/x", "action": "drop", "probability": 1.5}, "0 < probability <= 1"),
        ({"path": "/x", "action": "drop", "probability": True}, "0 < probability <= 1"),
        ({"path": "/x", "action": "drop", "times": 0}, "positive integer"),
        ({"path": "/x", "action": "drop", "times": 2.5}, "positive integer"),
        ({"path": "/x", "action": "drop", "when": "now"}, "unknown fault field"),
    ],
)
def test_bad_plans_are_refused_with_a_clear_message(data: Any, message: str) -> None:
    with pytest.raises(BadRequest) as refused:
        FaultRule.from_json(data)
    assert message in refused.value.message


@pytest.mark.parametrize(
    ("rule_path", "method", "path", "hit"),
    [
        ("/cws/v1/fundings", "POST", "/cws/v1/fundings", True),
        ("/cws/v1/fundings", "POST", "/cws/v1/fundings/tx-1", False),
        ("/cws/v1/fundings*", "GET", "/cws/v1/fundings/tx-1", True),
        ("/cws/v1/fundings*", "GET", "/cws/v1/limits/u", False),
        ("/*", "DELETE", "/anything", True),
    ],
)
def test_paths_match_exactly_or_by_prefix(
    rule_path: str, method: str, path: str, hit: bool
) -> None:
    assert FaultRule(path=rule_path, action="drop").matches(method, path) is hit


def test_a_method_specific_rule_ignores_other_methods() -> None:
    rule = FaultRule(path="/x", action="drop", method="POST")
    assert rule.matches("post", "/x")
    assert not rule.matches("GET", "/x")


# --- taking rules from a plan --------------------------------------------------------------

def test_a_times_budget_fires_exactly_that_often(tmp_path: Path) -> None:
    plan = FaultPlan(make_database(tmp_path))
    plan.add(_rule(action="drop", times=2))
    fired = [plan.take("POST", "/counter") for _ in range(4)]
    assert [rule is not None for rule in fired] == [True, True, False, False]
    (shown,) = plan.list()
    assert (shown["fired"], shown["remaining"]) == (2, 0)


def test_rules_fire_in_declaration_order_and_spent_ones_step_aside(tmp_path: Path) -> None:
    plan = FaultPlan(make_database(tmp_path))
    first = plan.add(_rule(action="status", status=503, times=1))
    second = plan.add(_rule(action="drop"))
    taken = [plan.take("POST", "/counter") for _ in range(3)]
    assert [rule.id if rule else None for rule in taken] == [first, second, second]


def test_probability_follows_the_seeded_rng_reproducibly(tmp_path: Path) -> None:
    plan = FaultPlan(make_database(tmp_path), rng=random.Random(1234))
    plan.add(_rule(action="drop", probability=0.3))
    outcomes = [plan.take("POST", "/counter") is not None for _ in range(50)]
    twin = random.Random(1234)
    assert outcomes == [twin.random() < 0.3 for _ in range(50)]
    assert 0 < sum(outcomes) < 50


def test_no_rule_fires_for_an_unmatched_request(tmp_path: Path) -> None:
    plan = FaultPlan(make_database(tmp_path))
    plan.add(_rule(action="drop", method="POST"))
    assert plan.take("GET", "/counter") is None
    assert plan.take("POST", "/other") is None


def test_a_rule_added_through_another_worker_is_in_force_when_its_add_returns(
    tmp_path: Path,
) -> None:
    # Two plans on one database are two worker processes: each keeps its own copy of the
    # live rules. The copy the first worker read before the add must not hide the new rule.
    db = make_database(tmp_path)
    worker_a, worker_b = FaultPlan(db), FaultPlan(db)
    assert not worker_a.may_fire("POST", "/counter")
    worker_b.add(_rule(action="drop"))
    assert worker_a.may_fire("POST", "/counter")
    assert worker_a.take("POST", "/counter") is not None


def test_a_removed_or_spent_rule_never_fires_from_a_stale_copy(tmp_path: Path) -> None:
    db = make_database(tmp_path)
    worker_a, worker_b = FaultPlan(db), FaultPlan(db)
    rule_id = worker_b.add(_rule(action="drop"))
    assert worker_a.may_fire("POST", "/counter")  # worker A's copy now holds the rule
    assert worker_b.remove(rule_id)
    assert worker_a.take("POST", "/counter") is None  # decided again under the lock
    worker_b.add(_rule(action="drop", times=1))
    assert worker_b.take("POST", "/counter") is not None
    assert worker_a.take("POST", "/counter") is None
    assert not worker_b.may_fire("POST", "/counter")


def test_rules_can_be_removed_one_by_one_or_all(tmp_path: Path) -> None:
    plan = FaultPlan(make_database(tmp_path))
    ids = plan.add_all([_rule(action="drop"), _rule(action="drop")])
    assert plan.remove(ids[0])
    assert not plan.remove(ids[0])
    assert [r["id"] for r in plan.list()] == [ids[1]]
    assert plan.clear() == 1
    assert plan.list() == []


# --- faults applied to requests, in process -----------------------------------------------

def test_a_status_fault_answers_in_the_apps_own_error_dialect(
    kernel: Kernel, client: httpx.Client
) -> None:
    kernel.faults.add(_rule(action="status", status=503, times=1))
    response = client.post("/counter")
    assert response.status_code == 503
    assert response.json() == {"code": "FAULT_INJECTED", "message": "injected fault"}
    assert kernel.counter() == 0
    assert client.post("/counter").status_code == 201


def test_the_fired_fault_is_recorded_in_the_journal(kernel: Kernel, client: httpx.Client) -> None:
    rule_id = kernel.faults.add(_rule(action="status", status=429))
    client.post("/counter")
    (entry,) = kernel.journal.query()
    assert entry["fault"] == f"status 429 (rule {rule_id})"
    assert entry["status"] == 429


def test_a_delay_fault_slows_the_response_then_lets_it_through(
    kernel: Kernel, client: httpx.Client
) -> None:
    kernel.faults.add(_rule(action="delay", delayMs=150))
    started = monotonic()
    response = client.post("/counter")
    assert monotonic() - started >= 0.15
    assert response.status_code == 201
    assert kernel.journal.query()[0]["latencyMs"] >= 150


def test_drop_in_process_raises_connection_dropped_and_applies_nothing(
    kernel: Kernel, client: httpx.Client
) -> None:
    kernel.faults.add(_rule(action="drop", times=1))
    with pytest.raises(ConnectionDropped):
        client.post("/counter")
    assert kernel.counter() == 0
    assert kernel.journal.query()[0]["fault"].startswith("drop")


def test_apply_then_drop_in_process_applies_then_raises(
    kernel: Kernel, client: httpx.Client
) -> None:
    kernel.faults.add(_rule(action="apply_then_drop", times=1))
    with pytest.raises(ConnectionDropped):
        client.post("/counter")
    assert kernel.counter() == 1
    (entry,) = kernel.journal.query()
    assert (entry["status"], entry["fault"].split(" ")[0]) == (201, "apply_then_drop")


def test_control_requests_are_never_faulted(kernel: Kernel, client: httpx.Client) -> None:
    kernel.faults.add(FaultRule(path="/*", action="status", status=500))
    response = client.get("/_sim/clock", headers={"Authorization": "Bearer admin-token-for-tests"})
    assert response.status_code == 200
    assert kernel.faults.list()[0]["fired"] == 0


# --- faults against a real server ---------------------------------------------------------

def test_drop_on_a_real_server_cuts_the_connection_without_applying(kernel: Kernel) -> None:
    kernel.faults.add(_rule(action="drop", times=1))
    with serve(kernel.app) as base, httpx.Client(base_url=base) as http:
        with pytest.raises(httpx.TransportError):
            http.post("/counter")
        assert http.get("/counter").json() == {"value": 0}


def test_apply_then_drop_on_a_real_server_applies_then_cuts_the_connection(
    kernel: Kernel,
) -> None:
    kernel.faults.add(_rule(action="apply_then_drop", times=1))
    with serve(kernel.app) as base, httpx.Client(base_url=base) as http:
        with pytest.raises(httpx.TransportError):
            http.post("/counter")
        assert http.get("/counter").json() == {"value": 1}
        assert http.post("/counter").json() == {"value": 2}


def test_a_times_budget_holds_under_concurrent_requests(kernel: Kernel) -> None:
    kernel.faults.add(_rule(action="status", status=503, times=5))

    def ten_requests(base: str) -> list[int]:
        with httpx.Client(base_url=base, timeout=30) as http:
            return [http.post("/counter").status_code for _ in range(10)]

    with serve(kernel.app) as base, ThreadPoolExecutor(8) as pool:
        statuses = [s for batch in pool.map(ten_requests, [base] * 8) for s in batch]
    assert statuses.count(503) == 5
    assert statuses.count(201) == 75
    assert kernel.counter() == 75
    (shown,) = kernel.faults.list()
    assert (shown["fired"], shown["remaining"]) == (5, 0)


def test_a_busy_worker_renews_its_copy_of_the_rules_off_the_request_path(
    tmp_path: Path,
) -> None:
    # Requests ask "is the copy fresh?" all the time; once it is getting old, one of them
    # wakes the background refresher, so requests keep their answer without a read of their
    # own (a stale copy sends the QR Code API's inline answer to the thread pool).
    db = make_database(tmp_path)
    readers: list[str] = []
    read = db.hot_read

    def counted(sql: str, params: Any = None) -> Any:
        readers.append(threading.current_thread().name)
        return read(sql, params)

    db.hot_read = counted  # type: ignore[method-assign]
    plan = FaultPlan(db)
    assert not plan.may_fire("POST", "/counter")  # the first copy: read by the request
    here = threading.current_thread().name

    def busy_until_renewed_three_times() -> bool | None:
        plan.copy_is_fresh()
        plan.may_fire("POST", "/counter")
        return readers.count("fault-rules") >= 3 or None

    assert poll_until(busy_until_renewed_three_times, timeout_s=10, interval_s=0.002)
    assert readers[0] == here
    # on a loaded machine the refresher may now and then come too late; never regularly
    assert readers.count(here) <= 1 + readers.count("fault-rules") // 2, readers


def test_an_idle_refresher_ends_and_the_next_busy_spell_starts_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(faults, "REFRESHER_IDLE_S", 0.05)
    db = make_database(tmp_path)
    refreshers: list[threading.Thread] = []
    read = db.hot_read

    def counted(sql: str, params: Any = None) -> Any:
        if threading.current_thread().name == "fault-rules":
            refreshers.append(threading.current_thread())
        return read(sql, params)

    db.hot_read = counted  # type: ignore[method-assign]
    plan = FaultPlan(db)

    def busy_until_renewed(count: int) -> bool | None:
        plan.may_fire("POST", "/counter")
        return len(refreshers) >= count or None

    assert poll_until(lambda: busy_until_renewed(1), timeout_s=10, interval_s=0.002)
    first = refreshers[0]
    assert poll_until(lambda: (not first.is_alive()) or None, timeout_s=10, interval_s=0.01)
    renewed = len(refreshers)
    assert poll_until(lambda: busy_until_renewed(renewed + 1), timeout_s=10, interval_s=0.002)
    assert refreshers[-1] is not first and refreshers[-1].is_alive()
