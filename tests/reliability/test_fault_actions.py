"""The two fault actions the reliability tiers add: "duplicate", and "crash" at a named point.

A crash kills the process serving the request, so each crash case runs the kernel test app
in a child process (`python -c`) and the parent reads what the dead child left in its
database: nothing at `before_commit` and `during_idempotency_write`, the committed increment
at `after_commit_before_response`, and never an answer.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from simkit.errors import BadRequest
from simkit.faults import FaultRule
from tests.unit.kernel_app import make_kernel_app

REPO = Path(__file__).resolve().parents[2]
CHILD = """
import sys
from pathlib import Path
import httpx
from simkit import faults
from tests.unit.kernel_app import make_kernel_app
kernel = make_kernel_app(Path(sys.argv[1]))
faults._hook_crash_points(kernel.db.engine, ("test_counter",))  # its idempotency table
client = httpx.Client(transport=httpx.WSGITransport(app=kernel.app), base_url="http://sim")
client.post("/counter")  # the row is new: its INSERT is the idempotency write
kernel.faults.add(faults.FaultRule.from_json(
    {"path": "/counter", "action": "crash", "point": sys.argv[2], "times": 1}))
print(client.post("/counter").status_code, flush=True)
"""


def _rule(**fields: Any) -> FaultRule:
    return FaultRule.from_json({"path": "/counter", **fields})


def test_a_crash_rule_names_its_point_and_round_trips() -> None:
    data = {"method": "POST", "path": "/counter", "action": "crash", "status": None,
            "delayMs": 0, "probability": 1.0, "times": 1, "point": "before_commit"}
    assert FaultRule.from_json(data).to_json() == data
    assert _rule(action="crash", point="before_commit").describe().startswith(
        "crash before_commit")


@pytest.mark.parametrize(("data", "message"), [
    ({"action": "crash"}, "needs a point"),
    ({"action": "crash", "point": "somewhere"}, "needs a point"),
    ({"action": "drop", "point": "before_commit"}, "only to action 'crash'"),
])
def test_bad_crash_rules_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        _rule(**data)


def test_a_stored_crash_rule_keeps_its_point(tmp_path: Path) -> None:
    kernel = make_kernel_app(tmp_path)
    kernel.faults.add(_rule(action="crash", point="after_commit_before_response", times=2))
    (shown,) = kernel.faults.list()
    assert (shown["action"], shown["point"], shown["remaining"]) == (
        "crash", "after_commit_before_response", 2)


def test_a_duplicated_request_is_served_twice_and_answered_once(tmp_path: Path) -> None:
    kernel = make_kernel_app(tmp_path)
    client = httpx.Client(transport=httpx.WSGITransport(app=kernel.app), base_url="http://sim")
    kernel.faults.add(_rule(action="duplicate", method="POST", times=1))

    response = client.post("/counter", json={"any": "body"})

    assert response.status_code == 201 and response.json() == {"value": 2}
    assert kernel.counter() == 2  # the counter is not idempotent: the copy counted too
    assert [e["fault"] is not None for e in kernel.journal.query()] == [False, True]


@pytest.mark.parametrize(("point", "left"), [
    ("before_commit", 1), ("during_idempotency_write", 1), ("after_commit_before_response", 2),
])
def test_a_crash_kills_the_serving_process_at_its_point(
    tmp_path: Path, point: str, left: int,
) -> None:
    if point == "during_idempotency_write":  # the counter's row must be new for its INSERT
        child = CHILD.replace('client.post("/counter")  # the row', '0  # the row')
        left = 0
    else:
        child = CHILD
    ran = subprocess.run([sys.executable, "-c", child, str(tmp_path), point], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=False)

    assert ran.returncode == -signal.SIGKILL, (ran.returncode, ran.stdout, ran.stderr)
    assert ran.stdout == ""  # no answer was ever given
    assert make_kernel_app(tmp_path).counter() == left
