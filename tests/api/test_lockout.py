"""The Basic-auth lockout of the QR Code API: exact under concurrency, not reset by a success,
and aimed at the attacker's address rather than at the casino whose accessId was guessed.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask

from sim_trustly.settings import load_trustly_settings
from simkit.settings import ConfigError
from tests.api.test_qr_token_api import post_token
from tests.conftest import DEMO_AUTH, TrustlyFactory, basic

pytestmark = pytest.mark.db

WRONG = basic("demo-access-id", "a-guess")
ATTACKER = "203.0.113.9"
CASINO = "10.20.30.40"


def post_from(app: Flask, address: str, auth: str) -> Any:
    """A token request from `address`, with its own client (clients are not shared by threads)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return post_token(client, auth=auth)


def test_forty_concurrent_wrong_keys_get_exactly_the_threshold_of_401s(trustly: Flask) -> None:
    start = threading.Barrier(40)

    def guess(_: int) -> int:
        start.wait()
        return int(post_from(trustly, ATTACKER, WRONG).status_code)

    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = Counter(pool.map(guess, range(40)))
    assert statuses == {401: 5, 429: 35}
    assert post_from(trustly, ATTACKER, DEMO_AUTH).status_code == 429


def test_good_logins_between_guesses_do_not_reset_the_count(trustly: Flask) -> None:
    statuses: list[tuple[str, int]] = []
    for _ in range(10):
        for _ in range(4):
            statuses.append(("wrong", post_from(trustly, CASINO, WRONG).status_code))
        statuses.append(("right", post_from(trustly, CASINO, DEMO_AUTH).status_code))
    wrong = Counter(status for kind, status in statuses if kind == "wrong")
    assert wrong == {401: 5, 429: 35}
    # The fifth wrong guess (the sixth request) locks: every later request is refused.
    assert [status for _, status in statuses[6:]] == [429] * 44
    assert statuses[4] == ("right", 200)


def test_a_casino_keeps_getting_tokens_while_a_stranger_guesses_its_key(trustly: Flask) -> None:
    guesses = [post_from(trustly, ATTACKER, WRONG).status_code for _ in range(20)]
    assert guesses == [401] * 5 + [429] * 15
    for _ in range(3):
        assert post_from(trustly, CASINO, DEMO_AUTH).status_code == 200
        assert post_from(trustly, ATTACKER, WRONG).status_code == 429
    assert post_from(trustly, ATTACKER, DEMO_AUTH).status_code == 429  # locked, key or not


def test_scoped_to_the_access_id_a_lockout_stops_every_source(
    make_trustly: TrustlyFactory,
) -> None:
    app = make_trustly(lockout_scope="access_id")
    assert [post_from(app, ATTACKER, WRONG).status_code for _ in range(6)] == [401] * 5 + [429]
    assert post_from(app, CASINO, DEMO_AUTH).status_code == 429


def test_lockout_scope_is_read_from_the_environment_and_checked() -> None:
    env = {"SCANPAY_TRUSTLY_LOCKOUT_SCOPE": "access_id"}
    assert load_trustly_settings(environ=env).lockout_scope == "access_id"
    assert load_trustly_settings(environ={}).lockout_scope == "source"
    with pytest.raises(ConfigError, match="lockout_scope"):
        load_trustly_settings(environ={"SCANPAY_TRUSTLY_LOCKOUT_SCOPE": "nobody"})


@pytest.mark.parametrize("access_id", ["a" * 129, "x" * 300], ids=["129", "300"])
def test_an_access_id_no_credential_can_have_is_a_401_not_a_500(
    trustly: Flask, access_id: str,
) -> None:
    """Longer than any stored accessId: refused without counting (on PostgreSQL the count's
    row could not even be stored), repeatedly, and the real credential is untouched."""
    for _ in range(7):
        assert post_from(trustly, ATTACKER, basic(access_id, "k")).status_code == 401
    assert post_from(trustly, ATTACKER, DEMO_AUTH).status_code == 200
