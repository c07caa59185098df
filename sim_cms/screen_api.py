"""The EGM screen: the page a slot machine shows, its status feed and the QR images.

No authentication: it is the machine's own display. The page shows the QR's url beside the
image as a plain link (a tester on a desktop opens or copies it instead of scanning); its
script and styles are files under `static/` (`/egm/_assets/...`, a path no EGM id can take), so
its Content-Security-Policy allows no inline code. Every request first lets the QR service
acquire lazily (no QR yet, or past `rotates_at`), so a screen rotates its QR even when no
background worker runs; a Trustly failure is shown on the page, never raised.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from flask import Blueprint, Response, jsonify, render_template

from sim_cms import qr_store
from sim_cms.context import CmsContext, cms
from sim_cms.egms import EGM_ID, EgmNotFound, egm_json
from sim_cms.models import Egm, QrDisplay
from sim_cms.qr_display import QrStatus, refresh_if_due
from simkit import qr
from simkit.clock import format_instant
from simkit.errors import SimError
from simkit.money import Money

bp = Blueprint("cms_screen", __name__, url_prefix="/egm", static_folder="static",
               static_url_path="/_assets")  # EGM ids start with a letter or digit

POLL_MS = 1500
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}
NO_STORE = {"Cache-Control": "no-store"}
# Scripts, styles, images and the status feed from this CMS only; nothing inline.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'"
)
PAGE_HEADERS = {**NO_STORE, "Content-Security-Policy": CONTENT_SECURITY_POLICY}


def format_meter(minor: int, currency: str) -> str:
    """The meter as a player reads it: `$1,234.50`, or `SEK 100.00` without a known symbol."""
    text = Money(minor, currency).display()
    symbol = SYMBOLS.get(currency)
    return text.replace(f"{currency} ", symbol, 1) if symbol else text


def _read_screen(ctx: CmsContext, egm_id: str) -> tuple[Egm, QrStatus, bool]:
    """The EGM, its QR status and whether a new QR is due, from one SELECT
    (`qr_store.screen_row`); the objects are detached copies of the rows."""
    row = qr_store.screen_row(ctx.db, egm_id) if EGM_ID.fullmatch(egm_id) else None
    if row is None:
        raise EgmNotFound(egm_id)
    egm = Egm(id=row.id, name=row.name, state=row.state, credit_meter=row.credit_meter,
              credit_limit=row.credit_limit, currency=row.currency, updated_at=row.updated_at)
    display = None if row.qr_token_id is None else QrDisplay(
        qr_token_id=row.qr_token_id, egm_id=row.id, url=row.url, token=row.token,
        expires_at=row.expires_at, rotates_at=row.rotates_at, displayed_at=row.displayed_at)
    now, failing = ctx.clock.now(), bool(row.failures)
    status = QrStatus(egm_id=egm_id, now=now, display=display, failures=row.failures or 0,
                      error=row.last_error if failing else None,
                      retry_at=row.next_acquire_at if failing else None,
                      spent=bool(row.funded))
    # `qr_display.due_for_rotation`'s rule: no QR, past rotatesAt or spent, and not backing
    # off (nor claimed by another caller: a claim moves next_acquire_at ahead too).
    due = (display is None or display.rotates_at <= now or bool(row.funded)) and (
        row.next_acquire_at is None or row.next_acquire_at <= now)
    return egm, status, due


def _screen_state(ctx: CmsContext, egm_id: str) -> tuple[Egm, QrStatus]:
    """The EGM and its QR after a lazy acquisition; EgmNotFound for an unknown id.

    One SELECT when nothing is due (every poll but the one after a rotation time);
    otherwise the acquisition (claimed, so only one caller asks Trustly) and a second read.
    """
    egm, status, due = _read_screen(ctx, egm_id)
    if not due:
        return egm, status
    refresh_if_due(ctx, egm_id)
    egm, status, _ = _read_screen(ctx, egm_id)
    return egm, status


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
        return page, 404, PAGE_HEADERS
    page = render_template("egm_screen.html", egm=egm, egm_id=egm.id, poll_ms=POLL_MS,
                           casino=ctx.settings.casino_name, status=status_json(egm, status))
    return page, 200, PAGE_HEADERS


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


# Images are rendered when a screen first asks for a code, then served from memory: every
# screen of the floor polls its QR, and a code is shown until its rotation (minutes).
RENDERED_CODES = 512


@lru_cache(maxsize=RENDERED_CODES)
def _png(url: str) -> bytes:
    return qr.render_png(url, box_size=10)


@lru_cache(maxsize=RENDERED_CODES)
def _svg(url: str) -> str:
    return qr.render_svg(url)


@bp.get("/<egm_id>/qr.png")
def qr_png(egm_id: str) -> Response:
    """The current QR as PNG (never cached by the browser: it changes at every rotation)."""
    return Response(_png(_current_url(egm_id)), mimetype="image/png", headers=NO_STORE)


@bp.get("/<egm_id>/qr.svg")
def qr_svg(egm_id: str) -> Response:
    """The current QR as SVG."""
    return Response(_svg(_current_url(egm_id)), mimetype="image/svg+xml", headers=NO_STORE)
