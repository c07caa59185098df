"""QR rotation on a manual clock: nothing before `expiresAt - buffer`, exactly one at it.

sim_cms is wired to an in-process sim_trustly sharing the test's clock, so "now" is the same
instant on both sides; acquisitions are counted on both sides (the CMS's QrDisplay rows and
the tokens sim_trustly issued for the EGM).
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
import zxingcpp
from flask import Flask
from PIL import Image
from sqlalchemy import func, select

from sim_cms.context import CmsContext
from sim_cms.models import QrDisplay
from sim_cms.qr_display import (
    acquire,
    backoff_s,
    current_qr,
    due_for_rotation,
    rotate_due,
    rotates_at_for,
    start_rotation_worker,
    was_displayed,
)
from sim_cms.settings import TrustlyLink
from sim_trustly.auth_service.issuance import flush_issued
from sim_trustly.models import QrTokenRow
from simkit.clock import ManualClock
from simkit.wait import poll_until
from tests.conftest import ADMIN_TOKEN, START, CmsFactory, cms_bearer

pytestmark = pytest.mark.db

ALL_EGMS = [f"EGM-{n:03d}" for n in range(1, 11)]


def ctx_of(app: Flask) -> CmsContext:
    context: CmsContext = app.extensions["sim_cms"]
    return context


def trustly_of(app: Flask) -> Flask:
    trustly: Flask = ctx_of(app).trustly_transport.app
    return trustly


def shown_on(app: Flask, egm_id: str) -> int:
    with ctx_of(app).db.read() as session:
        statement = select(func.count()).select_from(QrDisplay).where(QrDisplay.egm_id == egm_id)
        return int(session.scalar(statement) or 0)


def issued_for(app: Flask, egm_id: str) -> int:
    db = trustly_of(app).extensions["sim_trustly"].db
    flush_issued(db)  # issued tokens are stored by a background writer
    with db.read() as session:
        statement = select(func.count()).select_from(QrTokenRow).where(QrTokenRow.egm_id == egm_id)
        return int(session.scalar(statement) or 0)


def decoded_png(app: Flask, egm_id: str) -> list[str]:
    response = app.test_client().get(f"/egm/{egm_id}/qr.png")
    assert response.status_code == 200
    return [hit.text for hit in zxingcpp.read_barcodes(Image.open(io.BytesIO(response.data)))]


@pytest.fixture
def app(make_cms: CmsFactory) -> Flask:
    return make_cms(with_trustly=True)


def test_first_pass_gives_every_egm_one_qr_and_a_second_pass_none(app: Flask) -> None:
    assert rotate_due(ctx_of(app)).acquired == ALL_EGMS
    assert rotate_due(ctx_of(app)).acquired == []
    assert [issued_for(app, egm) for egm in ALL_EGMS] == [1] * 10


def test_rotation_waits_for_expiry_minus_buffer_then_acquires_exactly_once(
    app: Flask, clock: ManualClock,
) -> None:
    first = acquire(ctx_of(app), "EGM-001")
    assert first.expires_at == START + timedelta(seconds=300)  # sim_trustly's default lifetime
    assert first.rotates_at == first.expires_at - timedelta(seconds=30)

    clock.set(first.rotates_at - timedelta(milliseconds=1))
    assert "EGM-001" not in rotate_due(ctx_of(app)).acquired
    assert (shown_on(app, "EGM-001"), issued_for(app, "EGM-001")) == (1, 1)

    clock.set(first.rotates_at)
    assert "EGM-001" in rotate_due(ctx_of(app)).acquired
    assert rotate_due(ctx_of(app)).acquired == []
    assert (shown_on(app, "EGM-001"), issued_for(app, "EGM-001")) == (2, 2)
    with ctx_of(app).db.read() as session:
        second = current_qr(session, "EGM-001")
    assert second is not None and second.qr_token_id != first.qr_token_id
    assert second.rotates_at == first.rotates_at + timedelta(seconds=270)


def test_rotation_buffer_comes_from_settings(make_cms: CmsFactory) -> None:
    app = make_cms(with_trustly=True, rotation_buffer_s=100)
    display = acquire(ctx_of(app), "EGM-002")
    assert display.expires_at - display.rotates_at == timedelta(seconds=100)


def test_due_list_names_only_egms_past_rotates_at(app: Flask, clock: ManualClock) -> None:
    rotate_due(ctx_of(app))
    clock.advance(300)
    acquire(ctx_of(app), "EGM-003")  # freshly rotated by hand: not due
    with ctx_of(app).db.read() as session:
        due = due_for_rotation(session, clock.now())
    assert due == [egm for egm in ALL_EGMS if egm != "EGM-003"]


def test_qr_png_decodes_to_the_current_url_and_to_the_new_one_after_rotation(
    app: Flask, clock: ManualClock,
) -> None:
    old = acquire(ctx_of(app), "EGM-001")
    assert decoded_png(app, "EGM-001") == [old.url]
    clock.set(old.rotates_at)
    rotate_due(ctx_of(app))
    with ctx_of(app).db.read() as session:
        new = current_qr(session, "EGM-001")
    assert new is not None and new.url != old.url
    assert decoded_png(app, "EGM-001") == [new.url]


def test_screen_request_rotates_lazily_when_no_worker_runs(app: Flask, clock: ManualClock) -> None:
    old_url = decoded_png(app, "EGM-004")[0]
    clock.advance(269)
    assert decoded_png(app, "EGM-004") == [old_url]
    clock.advance(1)
    new_urls = decoded_png(app, "EGM-004")
    assert new_urls != [old_url]
    assert issued_for(app, "EGM-004") == 2


def test_rotated_tokens_stay_displayed_on_their_egm_only(app: Flask, clock: ManualClock) -> None:
    old = acquire(ctx_of(app), "EGM-001")
    clock.set(old.rotates_at)
    rotate_due(ctx_of(app))
    with ctx_of(app).db.read() as session:
        new = current_qr(session, "EGM-001")
        assert new is not None
        assert was_displayed(session, "EGM-001", old.qr_token_id)
        assert was_displayed(session, "EGM-001", new.qr_token_id)
        assert not was_displayed(session, "EGM-002", old.qr_token_id)
        assert not was_displayed(session, "EGM-002", new.qr_token_id)
        assert not was_displayed(session, "EGM-001", "never-issued")


def test_epoch_millisecond_expiry_is_understood(make_cms: CmsFactory) -> None:
    link = TrustlyLink(merchant_id="epoch-casino", access_id="epoch-id",
                       access_key="epoch-key-0123456789abcdef")
    app = make_cms(with_trustly=True, trustly=link)
    merchant = {"merchantId": link.merchant_id, "accessId": link.access_id,
                "accessKey": link.access_key, "expiresAtFormat": "epoch_ms",
                "tokenLifetimeS": 120}
    added = trustly_of(app).test_client().post(
        "/_sim/merchants", json=merchant, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert added.status_code == 201
    display = acquire(ctx_of(app), "EGM-001")
    assert display.expires_at == START + timedelta(seconds=120)
    assert display.rotates_at == START + timedelta(seconds=90)


@pytest.mark.parametrize(("lifetime_s", "rotates_after_s"), [(300, 270), (31, 1), (30, 15),
                                                            (10, 5)])
def test_short_lived_tokens_rotate_halfway_instead_of_at_once(
    lifetime_s: int, rotates_after_s: float,
) -> None:
    rotates = rotates_at_for(START, START + timedelta(seconds=lifetime_s), buffer_s=30)
    assert rotates == START + timedelta(seconds=rotates_after_s)


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_s(n, None, 60) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff_s(10_000, None, 60) == 60


def test_retry_after_is_honoured_even_beyond_the_cap() -> None:
    assert backoff_s(1, 45, 60) == 45
    assert backoff_s(1, 600, 60) == 600
    assert backoff_s(6, 0, 60) == 32


def test_worker_rotates_in_the_background_and_stops_when_asked(app: Flask) -> None:
    worker = start_rotation_worker(app, interval_s=0.01)
    try:
        # The first pass has finished once every EGM shows one QR.
        assert poll_until(lambda: all(shown_on(app, egm) == 1 for egm in ALL_EGMS) or None,
                          timeout_s=5, interval_s=0.01)
    finally:
        worker.stop()
    assert not worker.thread.is_alive()
    assert [issued_for(app, egm) for egm in ALL_EGMS] == [1] * 10



def test_a_spent_qr_is_replaced_at_once_and_never_shown_again(app: Flask) -> None:
    """A QR token pays one funding: once a funding names the QR on screen, the screen stops
    offering it and the next pass (or the screen's own poll) gets the next one, long before
    its rotation time."""
    rotate_due(ctx_of(app))
    client = app.test_client()
    token = client.get("/egm/EGM-003/status.json").get_json()["qrTokenId"]
    funded = client.post("/cws/v1/fundings", headers=cms_bearer(client), json={
        "transactionId": "tx-spend", "egmId": "EGM-003", "amount": 500, "currency": "USD",
        "ubai": "ubai-1", "qrTokenId": token})
    assert funded.status_code == 201
    with ctx_of(app).db.read() as session:
        assert due_for_rotation(session, ctx_of(app).clock.now()) == ["EGM-003"]
    replaced = client.get("/egm/EGM-003/status.json").get_json()["qrTokenId"]  # its poll
    assert replaced not in (None, token)
    assert shown_on(app, "EGM-003") == 2
    assert rotate_due(ctx_of(app)).acquired == []  # the replacement is not spent
