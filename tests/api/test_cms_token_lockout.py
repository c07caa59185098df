"""The CMS token endpoint's attempt limit: failed client authentications lock the caller out.

Exact under concurrency, not reset by a success, over when the window or the lockout has
passed on the clock, and aimed at the guessing address rather than at TPAS.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from sim_cms.settings import load_cms_settings
from simkit.clock import ManualClock
from simkit.settings import ConfigError
from tests.conftest import CMS_AUTH, CmsFactory, basic

pytestmark = pytest.mark.db

TOKEN_PATH = "/cws/v1/oauth/token"
WRONG = basic("tpas-client", "a-guess")
ATTACKER = "203.0.113.9"
TPAS = "10.20.30.40"


def post_from(app: Flask, address: str, auth: str) -> TestResponse:
    """A token request from `address`, with its own test client (threads do not share one)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client.post(TOKEN_PATH, data={"grant_type": "client_credentials"},
                       headers={"Authorization": auth})


def statuses(app: Flask, address: str, auth: str, times: int) -> list[int]:
    return [post_from(app, address, auth).status_code for _ in range(times)]


def test_the_sixth_failure_is_refused_with_429_and_retry_after(cms: Flask) -> None:
    assert statuses(cms, ATTACKER, WRONG, 5) == [401] * 5
    refused = post_from(cms, ATTACKER, WRONG)
    assert refused.status_code == 429 and refused.mimetype == "application/problem+json"
    assert refused.get_json()["code"] == "TOO_MANY_ATTEMPTS"
    assert refused.headers["Retry-After"] == "60"
    assert post_from(cms, ATTACKER, CMS_AUTH).status_code == 429  # locked, secret or not


def test_forty_concurrent_failures_get_exactly_five_401s(cms: Flask) -> None:
    start = threading.Barrier(40)

    def guess(_: int) -> int:
        start.wait()
        return post_from(cms, ATTACKER, WRONG).status_code

    with ThreadPoolExecutor(max_workers=40) as pool:
        counted = Counter(pool.map(guess, range(40)))
    assert counted == {401: 5, 429: 35}


def test_a_success_between_failures_does_not_reset_the_count(cms: Flask) -> None:
    answers: list[tuple[str, int]] = []
    for _ in range(3):
        answers += [("wrong", s) for s in statuses(cms, TPAS, WRONG, 2)]
        answers.append(("right", post_from(cms, TPAS, CMS_AUTH).status_code))
    # wrong, wrong, right, wrong, wrong, right, wrong (the fifth failure: locks), wrong...
    assert answers == [("wrong", 401), ("wrong", 401), ("right", 200),
                       ("wrong", 401), ("wrong", 401), ("right", 200),
                       ("wrong", 401), ("wrong", 429), ("right", 429)]


def test_failures_outside_the_window_start_a_new_count(cms: Flask, clock: ManualClock) -> None:
    assert statuses(cms, ATTACKER, WRONG, 4) == [401] * 4
    clock.advance(60)
    assert statuses(cms, ATTACKER, WRONG, 4) == [401] * 4  # a new window: not locked yet
    clock.advance(59)
    assert statuses(cms, ATTACKER, WRONG, 2) == [401, 429]  # the window's fifth locks


def test_a_lockout_ends_on_the_clock(cms: Flask, clock: ManualClock) -> None:
    assert statuses(cms, ATTACKER, WRONG, 6) == [401] * 5 + [429]
    clock.advance(59)
    refused = post_from(cms, ATTACKER, CMS_AUTH)
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "1")
    clock.advance(1)
    assert post_from(cms, ATTACKER, CMS_AUTH).status_code == 200
    assert statuses(cms, ATTACKER, WRONG, 6) == [401] * 5 + [429]  # counted afresh


def test_tpas_keeps_getting_tokens_while_a_stranger_guesses_its_secret(cms: Flask) -> None:
    assert statuses(cms, ATTACKER, WRONG, 7) == [401] * 5 + [429] * 2
    assert statuses(cms, TPAS, CMS_AUTH, 3) == [200] * 3
    assert post_from(cms, ATTACKER, CMS_AUTH).status_code == 429


def test_scoped_to_the_client_id_a_lockout_stops_every_source(make_cms: CmsFactory) -> None:
    app = make_cms(client_lockout_scope="client_id", client_lockout_threshold=2)
    assert statuses(app, ATTACKER, WRONG, 3) == [401, 401, 429]
    assert post_from(app, TPAS, CMS_AUTH).status_code == 429


def test_an_unknown_client_id_is_limited_too(cms: Flask) -> None:
    guess = basic("no-such-client", "x")
    assert statuses(cms, ATTACKER, guess, 6) == [401] * 5 + [429]


def test_the_body_and_an_encoded_basic_id_count_against_the_same_client(cms: Flask) -> None:
    client = cms.test_client()
    client.environ_base["REMOTE_ADDR"] = ATTACKER
    form = {"grant_type": "client_credentials", "client_id": "tpas-client",
            "client_secret": "guess"}
    assert [client.post(TOKEN_PATH, data=form).status_code for _ in range(3)] == [401] * 3
    encoded = basic("tpas%2Dclient", "guess")  # form-encoded Basic values are decoded
    assert statuses(cms, ATTACKER, encoded, 3) == [401, 401, 429]


def test_the_lockout_settings_are_read_from_the_config_file_and_checked(tmp_path: Path) -> None:
    config = tmp_path / "cms.toml"
    config.write_text('[cms]\nclient_lockout_threshold = 3\nclient_lockout_scope = "client_id"\n')
    settings = load_cms_settings(environ={}, config_path=config)
    assert (settings.client_lockout_threshold, settings.client_lockout_scope) == (3, "client_id")
    for bad in ("client_lockout_threshold = 0", 'client_lockout_scope = "everyone"'):
        config.write_text(f"[cms]\n{bad}\n")
        with pytest.raises(ConfigError, match="client_lockout"):
            load_cms_settings(environ={}, config_path=config)
