"""Random sequences of limit edits agree with a plain model, and nothing above the cap sticks."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim_cms import audit
from tests.conftest import CmsFactory, cms_bearer

pytestmark = pytest.mark.db

CAP = 50_000
DEFAULT = 10_000

LIMIT_VALUES = st.one_of(
    st.integers(min_value=0, max_value=CAP),
    st.sampled_from([0, CAP, CAP + 1, -1, 10**20]),
    st.integers(min_value=-(10**6), max_value=10 * CAP),
    st.sampled_from([1.5, "100", None, True, 1000.0]),
)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("PUT"), LIMIT_VALUES),
        st.tuples(st.just("PATCH"), LIMIT_VALUES),
        st.tuples(st.just("DELETE"), st.none()),
    ),
    max_size=12,
)


@dataclass
class Model:
    """What the API must show: the limit set for the UBAI, if any."""

    limit: int | None = None

    def apply(self, method: str, value: Any) -> tuple[int, str | None]:
        """Apply one request; returns the expected status and error code."""
        if method == "DELETE":
            self.limit = None
            return 200, None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return 400, "INVALID_REQUEST"
        if value > CAP:
            return 422, "LIMIT_ABOVE_CAP"
        if method == "PATCH" and self.limit is None:
            return 404, "LIMIT_NOT_FOUND"
        created = method == "PUT" and self.limit is None
        self.limit = value
        return (201 if created else 200), None

    def view(self) -> dict[str, Any]:
        limit = DEFAULT if self.limit is None else self.limit
        return {"dailyLimit": limit, "remainingToday": limit, "usedToday": 0,
                "source": "DEFAULT" if self.limit is None else "SET", "currency": "USD"}


def send(client: FlaskClient, headers: dict[str, str], path: str, method: str,
         value: Any) -> Any:
    if method == "DELETE":
        return client.delete(path, headers=headers)
    return client.open(path, method=method, json={"dailyLimit": value}, headers=headers)


def shown(body: dict[str, Any]) -> dict[str, Any]:
    return {key: body[key] for key in ("dailyLimit", "remainingToday", "usedToday", "source",
                                       "currency")}


def test_limit_edits_agree_with_a_plain_model(make_cms: CmsFactory) -> None:
    app = make_cms(default_daily_limit=DEFAULT, max_daily_limit=CAP)
    client = app.test_client()
    headers = cms_bearer(client)
    ubais = (f"prop-ubai-{n}" for n in itertools.count())

    @settings(max_examples=60, deadline=None, print_blob=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(ops=OPS)
    def run(ops: list[tuple[str, Any]]) -> None:
        path, model = f"/cws/v1/limits/{next(ubais)}", Model()
        for method, value in ops:
            status, code = model.apply(method, value)
            response = send(client, headers, path, method, value)
            assert response.status_code == status, (method, value, response.get_json())
            body = response.get_json()
            assert body.get("code") == code
            assert body.get("dailyLimit", 0) <= CAP
            got = client.get(path, headers=headers).get_json()
            assert shown(got) == model.view()
            if status < 300:
                assert shown(body) == model.view()

    run()
    with app.extensions["sim_cms"].db.read() as session:
        assert audit.verify_chain(session).ok
