"""What a daily-limit change leaves in the audit log, and what a refused one answers.

An auditor reads a limit's history from the casino chain alone: each record must say the
new limit, the limit it replaced (`previous`, none when the UBAI was on the default) and,
for a PUT, whether it created the limit. A refused edit answers a problem document whose
`field` names the offending member and whose `detail` is the string the OpenAPI schema
promises (a client shows it to a human).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask

from sim_cms import audit
from simkit.clock import ManualClock
from tests.api.test_limits_api import Api, api, assert_problem, db_of

pytestmark = pytest.mark.db
__all__ = ["api"]  # the fixture, used by name


def limit_records(app: Flask, ubai: str) -> list[tuple[str, dict[str, Any]]]:
    """The audit records filed under `ubai`, oldest first: (kind, payload)."""
    with db_of(app).read() as session:
        return [(record.kind, json.loads(record.payload))
                for record in audit.records_for(session, ubai)]


def test_a_put_records_whether_it_created_the_limit_and_what_it_replaced(
    cms: Flask, api: Api, clock: ManualClock,
) -> None:
    """The first PUT creates (nothing replaced); a second one replaces the limit it names."""
    assert api.put("ubai-1", {"dailyLimit": 25_000}).status_code == 201
    clock.advance(60)
    assert api.put("ubai-1", {"dailyLimit": 30_000, "currency": "USD"}).status_code == 200
    assert limit_records(cms, "ubai-1") == [
        ("LIMIT_SET", {"dailyLimit": 25_000, "previous": None, "created": True}),
        ("LIMIT_SET", {"dailyLimit": 30_000, "previous": 25_000, "created": False}),
    ]


def test_a_patch_records_the_new_limit_and_the_one_it_replaced(
    cms: Flask, api: Api, clock: ManualClock,
) -> None:
    """PATCH only modifies, so its record always names the limit it replaced."""
    api.put("ubai-1", {"dailyLimit": 5000})
    clock.advance(5)
    assert api.patch("ubai-1", {"dailyLimit": 7000}).status_code == 200
    assert limit_records(cms, "ubai-1")[1:] == [
        ("LIMIT_UPDATED", {"dailyLimit": 7000, "previous": 5000}),
    ]


def test_a_delete_records_the_limit_it_removed(cms: Flask, api: Api) -> None:
    """After a DELETE the limit is gone from the API; only the record still says what it was."""
    api.put("ubai-1", {"dailyLimit": 5000})
    assert api.delete("ubai-1").get_json()["source"] == "DEFAULT"
    assert limit_records(cms, "ubai-1")[1:] == [("LIMIT_DELETED", {"previous": 5000})]


def test_a_currency_mismatch_names_the_currency_field(api: Api) -> None:
    """A client maps the problem back onto its form by `field`, for the 422 as for a 400."""
    for send, ubai in ((api.put, "ubai-2"), (api.patch, "ubai-2")):
        problem = assert_problem(send(ubai, {"dailyLimit": 500, "currency": "EUR"}),
                                 422, "CURRENCY_MISMATCH")
        assert (problem["field"], problem["expected"]) == ("currency", "USD")


REFUSED_BODIES = [
    ([500], "body"),
    ({}, "dailyLimit"),
    ({"dailyLimit": "500"}, "dailyLimit"),
    ({"dailyLimit": -1}, "dailyLimit"),
    ({"dailyLimit": 500, "currency": "usd"}, "currency"),
]


@pytest.mark.parametrize(("body", "field"), REFUSED_BODIES,
                         ids=[repr(b) for b, _ in REFUSED_BODIES])
def test_every_malformed_limit_body_is_explained_in_words(
    api: Api, body: Any, field: str,
) -> None:
    """`detail` is a required string of the Problem schema: never null, never empty."""
    problem = assert_problem(api.put("ubai-1", body), 400, "INVALID_REQUEST")
    assert problem["field"] == field
    assert isinstance(problem["detail"], str) and problem["detail"]
