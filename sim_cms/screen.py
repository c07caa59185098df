"""The EGM screen: the page a slot machine shows, its status feed and the QR images.

No authentication: it is the machine's own display. Every request first lets the QR service
acquire lazily (no QR yet, or past `rotates_at`), so a screen rotates its QR even when no
background worker runs; a Trustly failure is shown on the page, never raised.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, render_template

from sim_cms.context import CmsContext, cms
from sim_cms.egms import EgmNotFound, egm_json, get_egm
from sim_cms.models import Egm
from sim_cms.qr_display import QrStatus, qr_status, refresh_if_due
from simkit import qr
from simkit.clock import format_instant
from simkit.errors import SimError
from simkit.money import Money

bp = Blueprint("cms_screen", __name__, url_prefix="/egm")

POLL_MS = 1500
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}
NO_STORE = {"Cache-Control": "no-store"}


def format_meter(minor: int, currency: str) -> str:
    """The meter as a player reads it: `$1,234.50`, or `SEK 100.00` without a known symbol."""
    text = Money(minor, currency).display()
    symbol = SYMBOLS.get(currency)
    return text.replace(f"{currency} ", symbol, 1) if symbol else text


def _screen_state(ctx: CmsContext, egm_id: str) -> tuple[Egm, QrStatus]:
    """The EGM and its QR after a lazy acquisition; EgmNotFound for an unknown id."""
    with ctx.db.read() as session:
        get_egm(session, egm_id)
    refresh_if_due(ctx, egm_id)
    with ctx.db.read() as session:
        return get_egm(session, egm_id), qr_status(session, egm_id, ctx.clock.now())


def notice(status: QrStatus) -> str | None:
    """The error line the screen shows while Trustly fails, e.g. `QR unavailable — ... 4s`."""
    if status.error is None:
        return None
    what = "QR refresh failing" if status.showable else "QR unavailable"
    return f"{what} — retrying in {status.retry_in_s or 0}s"


def status_json(egm: Egm, status: QrStatus) -> dict[str, Any]:
    """What the page polls: meter, state and the QR on screen (or the error and retry)."""
    return {**egm_json(egm), "egmId": egm.id, "now": format_instant(status.now),
            "creditMeterText": format_meter(egm.credit_meter, egm.currency),
            **status.to_json(), "notice": notice(status)}


@bp.get("/<egm_id>")
def screen(egm_id: str) -> tuple[str, int, dict[str, str]]:
    """The EGM screen page (an HTML 404 page for an unknown EGM)."""
    ctx = cms()
    try:
        egm, status = _screen_state(ctx, egm_id)
    except EgmNotFound:
        page = render_template("egm_screen.html", egm=None, egm_id=egm_id,
                               casino=ctx.settings.casino_name)
        return page, 404, NO_STORE
    page = render_template("egm_screen.html", egm=egm, egm_id=egm.id, poll_ms=POLL_MS,
                           casino=ctx.settings.casino_name, status=status_json(egm, status))
    return page, 200, NO_STORE


@bp.get("/<egm_id>/status.json")
def status(egm_id: str) -> Response:
    """The screen's status feed, polled by the page every POLL_MS."""
    egm, qr_state = _screen_state(cms(), egm_id)
    response = jsonify(status_json(egm, qr_state))
    response.headers.update(NO_STORE)
    return response


def _current_url(egm_id: str) -> str:
    """The url to render, or 503 QR_UNAVAILABLE while Trustly gives none."""
    _, qr_state = _screen_state(cms(), egm_id)
    shown = qr_state.showable
    if shown is None:
        retry = qr_state.retry_in_s if qr_state.retry_in_s is not None else 1
        raise SimError("QR_UNAVAILABLE", 503, "no QR to show yet: Trustly has not issued one",
                       headers={"Retry-After": str(max(retry, 1))}, retryAfter=retry,
                       egmId=egm_id, error=qr_state.error)
    return shown.url


@bp.get("/<egm_id>/qr.png")
def qr_png(egm_id: str) -> Response:
    """The current QR as PNG (never cached: it changes at every rotation)."""
    return Response(qr.render_png(_current_url(egm_id), box_size=10), mimetype="image/png",
                    headers=NO_STORE)


@bp.get("/<egm_id>/qr.svg")
def qr_svg(egm_id: str) -> Response:
    """The current QR as SVG."""
    return Response(qr.render_svg(_current_url(egm_id)), mimetype="image/svg+xml",
                    headers=NO_STORE)
