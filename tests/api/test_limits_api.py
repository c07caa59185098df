"""The Daily Limits API: reading, setting, changing and removing a UBAI's daily limit."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from sim_cms import audit
from sim_cms.limits import LimitChange, effective_limit, gaming_day, lock_usage, set_limit
from sim_cms.models import DailyLimit, LimitUsage
from sim_cms.settings import CmsSettings
from simkit.clock import ManualClock
from simkit.db import Database
from simkit.money import MinorUnits
from simkit.settings import ConfigError
from tests.conftest import CmsFactory, cms_bearer

pytestmark = pytest.mark.db

CAP = 1_000_000
DEFAULT = 100_000


def path(ubai: str) -> str:
    return f"/cws/v1/limits/{ubai}"


def db_of(app: Flask) -> Database:
    database: Database = app.extensions["sim_cms"].db
    return database


def snapshot(app: Flask) -> tuple[Any, ...]:
    """Everything a limit request could change: limits, usage and the audit chain."""
    with db_of(app).read() as session:
        limits = sorted((r.ubai, r.daily_limit, r.currency, r.updated_at)
                        for r in session.scalars(select(DailyLimit)))
        usage = sorted((r.ubai, r.gaming_day, r.used) for r in session.scalars(select(LimitUsage)))
        return tuple(limits), tuple(usage), audit.chain_length(session)


def audit_length(app: Flask) -> int:
    with db_of(app).read() as session:
        return audit.chain_length(session)


def add_locked(session: Session, ubai: str, day: date, amount: int) -> None:
    """Lock the usage row, then write back what was read plus `amount`.

    An absolute write-back on purpose: it loses updates unless the lock really serialises.
    """
    used = lock_usage(session, ubai, day).used
    session.execute(update(LimitUsage).where(LimitUsage.ubai == ubai,
                                             LimitUsage.gaming_day == day)
                    .values(used=used + amount))


def use(app: Flask, ubai: str, amount: int, day: date) -> None:
    """Record usage as the ledger does: lock the usage row, then add to it."""
    with db_of(app).write() as session:
        add_locked(session, ubai, day, amount)


class Api:
    """A client of the limits API with a token."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.headers = cms_bearer(client)

    def get(self, ubai: str) -> TestResponse:
        return self.client.get(path(ubai), headers=self.headers)

    def put(self, ubai: str, body: Any = None, **kwargs: Any) -> TestResponse:
        return self.client.put(path(ubai), json=body, headers=self.headers, **kwargs)

    def patch(self, ubai: str, body: Any = None, **kwargs: Any) -> TestResponse:
        return self.client.patch(path(ubai), json=body, headers=self.headers, **kwargs)

    def delete(self, ubai: str) -> TestResponse:
        return self.client.delete(path(ubai), headers=self.headers)


@pytest.fixture
def api(cms_client: FlaskClient) -> Api:
    return Api(cms_client)


def assert_problem(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.get_json()
    assert body["code"] == code
    return body


# --- reading -------------------------------------------------------------------------------

def test_a_ubai_without_a_limit_has_the_configured_default(api: Api) -> None:
    response = api.get("ubai-1")
    assert response.status_code == 200
    assert response.get_json() == {
        "ubai": "ubai-1", "dailyLimit": DEFAULT, "currency": "USD", "usedToday": 0,
        "remainingToday": DEFAULT, "gamingDay": "2026-11-25", "updatedAt": None,
        "source": "DEFAULT",
    }


def test_the_default_comes_from_the_settings(make_cms: CmsFactory) -> None:
    api = Api(make_cms(default_daily_limit=5000).test_client())
    assert api.get("ubai-1").get_json()["dailyLimit"] == 5000


def test_a_default_above_the_cap_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match="above the cap"):
        CmsSettings(database_url="sqlite://", default_daily_limit=CAP + 1, max_daily_limit=CAP)


def test_reading_changes_nothing(cms: Flask, api: Api) -> None:
    before = snapshot(cms)
    api.get("ubai-1")
    assert snapshot(cms) == before


# --- PUT -------------------------------------------------------------------------------------

def test_put_creates_a_limit_with_201_and_records_it(cms: Flask, api: Api) -> None:
    response = api.put("ubai-1", {"dailyLimit": 25_000, "currency": "USD"})
    assert response.status_code == 201
    assert response.headers["Location"] == path("ubai-1")
    body = response.get_json()
    assert body["dailyLimit"] == 25_000 and body["remainingToday"] == 25_000
    assert body["source"] == "SET" and body["updatedAt"] == "2026-11-25T21:00:00.000Z"
    assert api.get("ubai-1").get_json() == body
    with db_of(cms).read() as session:
        [record] = audit.records_for(session, "ubai-1")
        assert record.kind == "LIMIT_SET"
        assert audit.verify_chain(session).ok


def test_put_replaces_a_limit_with_200(cms: Flask, api: Api, clock: ManualClock) -> None:
    api.put("ubai-1", {"dailyLimit": 25_000, "currency": "USD"})
    clock.advance(60)
    response = api.put("ubai-1", {"dailyLimit": 30_000})
    assert response.status_code == 200 and "Location" not in response.headers
    body = response.get_json()
    assert body["dailyLimit"] == 30_000 and body["updatedAt"] == "2026-11-25T21:01:00.000Z"
    assert audit_length(cms) == 2


def test_a_zero_limit_self_excludes(api: Api) -> None:
    body = api.put("ubai-1", {"dailyLimit": 0}).get_json()
    assert body["dailyLimit"] == 0 and body["remainingToday"] == 0


def test_a_limit_at_the_cap_is_accepted(api: Api) -> None:
    assert api.put("ubai-1", {"dailyLimit": CAP}).status_code == 201


@pytest.mark.parametrize("value", [CAP + 1, 10**30])
def test_a_limit_above_the_cap_is_refused_and_changes_nothing(
    cms: Flask, api: Api, value: int
) -> None:
    api.put("ubai-1", {"dailyLimit": 5000})
    before = snapshot(cms)
    for send in (api.put, api.patch):
        body = assert_problem(send("ubai-1", {"dailyLimit": value}), 422, "LIMIT_ABOVE_CAP")
        assert body["field"] == "dailyLimit" and body["cap"] == CAP
    assert_problem(api.put("ubai-2", {"dailyLimit": value}), 422, "LIMIT_ABOVE_CAP")
    assert snapshot(cms) == before


def test_the_cap_comes_from_the_settings(make_cms: CmsFactory) -> None:
    api = Api(make_cms(max_daily_limit=200_000).test_client())
    assert api.put("ubai-1", {"dailyLimit": 200_000}).status_code == 201
    assert_problem(api.put("ubai-1", {"dailyLimit": 200_001}), 422, "LIMIT_ABOVE_CAP")


# --- validation ------------------------------------------------------------------------------

BAD_LIMITS = [
    ({"dailyLimit": 500.0}, "dailyLimit"),
    ({"dailyLimit": 1e3}, "dailyLimit"),
    ({"dailyLimit": "500"}, "dailyLimit"),
    ({"dailyLimit": True}, "dailyLimit"),
    ({"dailyLimit": None}, "dailyLimit"),
    ({"dailyLimit": -1}, "dailyLimit"),
    ({"dailyLimit": [500]}, "dailyLimit"),
    ({}, "dailyLimit"),
    ({"currency": "USD"}, "dailyLimit"),
    ({"dailyLimit": 500, "currency": "usd"}, "currency"),
    ({"dailyLimit": 500, "currency": 840}, "currency"),
    ({"dailyLimit": 500, "currency": "US"}, "currency"),
    ({"dailyLimit": 500, "daily_limit": 500}, "daily_limit"),
    ([500], "body"),
    ("500", "body"),
]


@pytest.mark.parametrize(("body", "field"), BAD_LIMITS, ids=[repr(b) for b, _ in BAD_LIMITS])
def test_malformed_bodies_are_invalid_requests_naming_the_field(
    cms: Flask, api: Api, body: Any, field: str
) -> None:
    api.put("ubai-1", {"dailyLimit": 5000})
    before = snapshot(cms)
    for send, ubai in ((api.put, "ubai-1"), (api.patch, "ubai-1"), (api.put, "ubai-2")):
        problem = assert_problem(send(ubai, body), 400, "INVALID_REQUEST")
        assert problem["field"] == field
    assert snapshot(cms) == before


@pytest.mark.parametrize("currency", ["EUR", "GBP", "XYZ"])
def test_another_currency_is_a_mismatch(cms: Flask, api: Api, currency: str) -> None:
    api.put("ubai-1", {"dailyLimit": 5000})
    before = snapshot(cms)
    for send, ubai in ((api.put, "ubai-1"), (api.patch, "ubai-1"), (api.put, "ubai-2")):
        problem = assert_problem(send(ubai, {"dailyLimit": 500, "currency": currency}),
                                 422, "CURRENCY_MISMATCH")
        assert problem["expected"] == "USD"
    assert snapshot(cms) == before


def test_a_body_that_is_not_json_is_refused(cms: Flask, api: Api) -> None:
    before = snapshot(cms)
    headers = api.headers
    broken = api.client.put(path("ubai-1"), data="{", content_type="application/json",
                            headers=headers)
    assert_problem(broken, 400, "INVALID_REQUEST")
    form = api.client.put(path("ubai-1"), data={"dailyLimit": "5"}, headers=headers)
    assert_problem(form, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert snapshot(cms) == before


BAD_UBAIS = ["a" * 129, "has%20space", "semi;colon", "plus+sign", "%C3%A9", "tab%09"]


@pytest.mark.parametrize("ubai", BAD_UBAIS)
def test_a_malformed_ubai_is_refused_by_every_method(cms: Flask, api: Api, ubai: str) -> None:
    before = snapshot(cms)
    for response in (api.get(ubai), api.put(ubai, {"dailyLimit": 5}),
                     api.patch(ubai, {"dailyLimit": 5}), api.delete(ubai)):
        assert assert_problem(response, 400, "INVALID_UBAI")["field"] == "ubai"
    assert snapshot(cms) == before


def test_the_ubai_is_checked_before_the_body(api: Api) -> None:
    assert_problem(api.put("bad ubai", {"dailyLimit": 1.5}), 400, "INVALID_UBAI")


@pytest.mark.parametrize("ubai", ["a", "A" * 128, "bank:acct-1.2_3", "0"])
def test_every_well_formed_ubai_is_accepted(api: Api, ubai: str) -> None:
    assert api.put(ubai, {"dailyLimit": 5}).status_code == 201
    assert api.get(ubai).get_json()["ubai"] == ubai


def test_every_method_needs_a_token(cms: Flask, cms_client: FlaskClient) -> None:
    before = snapshot(cms)
    for method in ("get", "put", "patch", "delete"):
        response = getattr(cms_client, method)(path("ubai-1"), json={"dailyLimit": 5})
        assert_problem(response, 401, "INVALID_TOKEN")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert snapshot(cms) == before


def test_an_expired_token_changes_nothing(cms: Flask, api: Api, clock: ManualClock) -> None:
    clock.advance(300)
    before = snapshot(cms)
    assert_problem(api.put("ubai-1", {"dailyLimit": 5}), 401, "TOKEN_EXPIRED")
    assert snapshot(cms) == before


# --- PATCH and DELETE ------------------------------------------------------------------------

def test_patch_changes_a_limit_that_is_set(cms: Flask, api: Api, clock: ManualClock) -> None:
    api.put("ubai-1", {"dailyLimit": 5000})
    clock.advance(5)
    response = api.patch("ubai-1", {"dailyLimit": 7000, "currency": "USD"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["dailyLimit"] == 7000 and body["updatedAt"] == "2026-11-25T21:00:05.000Z"
    with db_of(cms).read() as session:
        assert [r.kind for r in audit.records_for(session, "ubai-1")] == \
            ["LIMIT_SET", "LIMIT_UPDATED"]


def test_patch_on_a_ubai_without_a_limit_is_not_found(cms: Flask, api: Api) -> None:
    before = snapshot(cms)
    assert_problem(api.patch("ubai-1", {"dailyLimit": 7000}), 404, "LIMIT_NOT_FOUND")
    assert snapshot(cms) == before
    assert api.get("ubai-1").get_json()["source"] == "DEFAULT"


def test_delete_goes_back_to_the_default(cms: Flask, api: Api) -> None:
    api.put("ubai-1", {"dailyLimit": 5000})
    response = api.delete("ubai-1")
    assert response.status_code == 200
    body = response.get_json()
    assert body["dailyLimit"] == DEFAULT and body["source"] == "DEFAULT"
    assert body["updatedAt"] is None
    assert api.get("ubai-1").get_json() == body
    with db_of(cms).read() as session:
        assert [r.kind for r in audit.records_for(session, "ubai-1")] == \
            ["LIMIT_SET", "LIMIT_DELETED"]


def test_delete_without_a_limit_is_harmless_and_changes_nothing(cms: Flask, api: Api) -> None:
    before = snapshot(cms)
    response = api.delete("ubai-1")
    assert response.status_code == 200 and response.get_json()["source"] == "DEFAULT"
    assert snapshot(cms) == before


def test_limits_of_different_ubais_are_independent(api: Api) -> None:
    api.put("ubai-1", {"dailyLimit": 5000})
    assert api.get("ubai-2").get_json()["dailyLimit"] == DEFAULT


# --- usage and the gaming day ----------------------------------------------------------------

def test_usage_shows_as_used_and_remaining(cms: Flask, api: Api, clock: ManualClock) -> None:
    use(cms, "ubai-1", 30_000, gaming_day(clock.now(), cms.extensions["sim_cms"].settings))
    body = api.get("ubai-1").get_json()
    assert body["usedToday"] == 30_000 and body["remainingToday"] == DEFAULT - 30_000


def test_a_limit_lowered_below_todays_usage_leaves_nothing_remaining(
    cms: Flask, api: Api, clock: ManualClock
) -> None:
    use(cms, "ubai-1", 30_000, date(2026, 11, 25))
    before_usage = snapshot(cms)[1]
    body = api.put("ubai-1", {"dailyLimit": 10_000}).get_json()
    assert (body["usedToday"], body["remainingToday"]) == (30_000, 0)
    assert snapshot(cms)[1] == before_usage  # editing a limit never touches usage


@pytest.mark.parametrize(
    ("label", "last_ms", "first_ms", "old_day", "new_day"),
    [
        ("ordinary", datetime(2026, 11, 26, 13, 59, 59, 999_000, tzinfo=UTC),
         datetime(2026, 11, 26, 14, tzinfo=UTC), "2026-11-25", "2026-11-26"),
        ("spring-forward", datetime(2026, 3, 8, 12, 59, 59, 999_000, tzinfo=UTC),
         datetime(2026, 3, 8, 13, tzinfo=UTC), "2026-03-07", "2026-03-08"),
        ("fall-back", datetime(2026, 11, 1, 13, 59, 59, 999_000, tzinfo=UTC),
         datetime(2026, 11, 1, 14, tzinfo=UTC), "2026-10-31", "2026-11-01"),
    ],
)
def test_usage_resets_when_the_gaming_day_changes_at_six_local(
    cms: Flask, api: Api, clock: ManualClock, label: str, last_ms: datetime,
    first_ms: datetime, old_day: str, new_day: str,
) -> None:
    api.put("ubai-1", {"dailyLimit": 50_000})
    clock.set(last_ms)
    headers = cms_bearer(api.client)  # the earlier token expired when the clock moved
    use(cms, "ubai-1", 20_000, date.fromisoformat(old_day))
    body = api.client.get(path("ubai-1"), headers=headers).get_json()
    assert (body["gamingDay"], body["usedToday"], body["remainingToday"]) == \
        (old_day, 20_000, 30_000)
    clock.set(first_ms)
    body = api.client.get(path("ubai-1"), headers=headers).get_json()
    assert (body["gamingDay"], body["usedToday"], body["remainingToday"]) == \
        (new_day, 0, 50_000)


# --- the service functions the ledger calls --------------------------------------------------

def test_effective_limit_is_the_set_limit_or_the_default(cms: Flask, api: Api) -> None:
    settings = cms.extensions["sim_cms"].settings
    api.put("ubai-1", {"dailyLimit": 0})
    with db_of(cms).read() as session:
        assert effective_limit(session, "ubai-1", settings) == 0
        assert effective_limit(session, "ubai-2", settings) == DEFAULT


def test_lock_usage_creates_the_row_once_and_keeps_its_total(cms: Flask) -> None:
    day = date(2026, 11, 25)
    use(cms, "ubai-1", 100, day)
    use(cms, "ubai-1", 250, day)
    use(cms, "ubai-1", 7, date(2026, 11, 26))
    assert snapshot(cms)[1] == (("ubai-1", day, 350), ("ubai-1", date(2026, 11, 26), 7))


def test_racing_writers_of_one_new_usage_row_lose_no_update(cms: Flask) -> None:
    """Many workers creating and adding to the same row at once: every addition counts."""
    workers, rounds, day = 8, 5, date(2026, 11, 25)
    database = Database(db_of(cms).url)  # its own pool, as another worker process would have
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            for _ in range(rounds):
                with database.write() as session:
                    add_locked(session, "race-ubai", day, 1)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    database.dispose()
    assert errors == []
    assert snapshot(cms)[1] == (("race-ubai", day, workers * rounds),)


def test_racing_puts_of_a_new_limit_create_it_exactly_once(cms: Flask) -> None:
    settings = cms.extensions["sim_cms"].settings
    workers = 8
    database = Database(db_of(cms).url)
    barrier = threading.Barrier(workers)
    created: list[bool] = []
    errors: list[BaseException] = []

    def work(value: int) -> None:
        change = LimitChange(MinorUnits(value))
        try:
            barrier.wait()
            created.append(set_limit(database, "race-ubai", change, settings,
                                     datetime(2026, 11, 25, 21, tzinfo=UTC))[1])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(1000 + n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    database.dispose()
    assert errors == [] and sorted(created) == [False] * (workers - 1) + [True]
    with db_of(cms).read() as session:
        assert len(audit.records_for(session, "race-ubai")) == workers
        assert audit.verify_chain(session).ok
