"""What each EGM shows: the QR token acquired from Trustly, its rotation, and Trustly failures.

A service module (no Flask). Every acquisition goes through `acquire`, which calls Trustly
outside any database transaction (a slow Trustly must never hold the write lock) and then
records the outcome: on success a `QrDisplay` row (kept after rotation, so a player who scanned
just before a rotation can still pay until Trustly's own expiry) and `QrState.current`; on a
failure `last_error`, `failures` and a backoff in `next_acquire_at`.

Rotation is `rotate_due`: every EGM whose QR has reached `rotates_at` (`expiresAt - buffer`),
whose QR is spent (its token paid a funding: a QR token pays one), or that has none, gets
exactly one new acquisition, unless it is backing off. A due EGM is
first *claimed* (its `next_acquire_at` moved a lease ahead under the EGM's row lock), so the
background worker and a screen asking at the same moment never both call Trustly.

`register_display` (the control API's `POST /_sim/egms/{id}/qr-display`) records a QR obtained
elsewhere exactly as an acquisition would, for tests and harness runs without a Trustly.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from sim_cms import qr_store
from sim_cms.egms import EGM_ID, EgmNotFound, lock_egm
from sim_cms.models import Egm, QrDisplay, QrFunding, QrState
from sim_cms.trustly_client import (
    MAX_TOKEN_ID_CHARS,
    MAX_URL_BYTES,
    AcquiredQr,
    TrustlyUnavailable,
    request_qr_token,
    token_id,
)
from simkit.clock import format_instant, parse_instant
from simkit.db import Database
from simkit.errors import BadRequest, SimError

if TYPE_CHECKING:
    from sim_cms.context import CmsContext

log = logging.getLogger(__name__)
LEASE_MARGIN_S = 5.0  # a claim outlives the slowest Trustly call by this much
MAX_BACKOFF_EXPONENT = 30


@dataclass(frozen=True)
class QrStatus:
    """One EGM's QR as the screen and the state dump show it at `now`."""

    egm_id: str
    now: datetime
    display: QrDisplay | None
    failures: int
    error: str | None
    retry_at: datetime | None
    spent: bool = False  # the current QR token already paid a funding

    @property
    def showable(self) -> QrDisplay | None:
        """The current QR if a phone could still use it: not past Trustly's expiry, and not
        spent (a QR token pays one funding; the next player needs the next token)."""
        if self.display is None or self.display.expires_at <= self.now or self.spent:
            return None
        return self.display

    @property
    def retry_in_s(self) -> int | None:
        """Whole seconds until the next attempt after a failure (None when not failing)."""
        if self.error is None or self.retry_at is None:
            return None
        return max(0, math.ceil((self.retry_at - self.now).total_seconds()))

    def to_json(self) -> dict[str, Any]:
        """The QR part of `status.json` and of the control API's state dump."""
        shown = self.showable
        return {
            "qrTokenId": shown.qr_token_id if shown else None,
            "url": shown.url if shown else None,
            "expiresAt": format_instant(shown.expires_at) if shown else None,
            "rotatesAt": format_instant(shown.rotates_at) if shown else None,
            "error": self.error, "failures": self.failures, "retryInS": self.retry_in_s,
        }


@dataclass
class RotationReport:
    """What one `rotate_due` pass did: EGMs that got a new QR, and failures by EGM."""

    acquired: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def display_json(display: QrDisplay) -> dict[str, Any]:
    """The wire shape of `POST /cws/v1/egms/{id}/qr`."""
    return {"egmId": display.egm_id, "url": display.url, "qrTokenId": display.qr_token_id,
            "expiresAt": format_instant(display.expires_at),
            "rotatesAt": format_instant(display.rotates_at)}


def was_displayed(session: Session, egm_id: str, qr_token_id: str) -> bool:
    """True when the CMS showed this QR token on this EGM (current or rotated away).

    The funding check for `qrTokenId`: a token stays valid here after rotation, because
    Trustly's expiry, not our rotation, bounds how long a scanned code may be paid.
    """
    display = session.get(QrDisplay, qr_token_id)
    return display is not None and display.egm_id == egm_id


def current_qr(session: Session, egm_id: str) -> QrDisplay | None:
    """The QR the EGM shows now (possibly past `rotates_at` until the next acquisition)."""
    state = session.get(QrState, egm_id)
    if state is None or state.current_qr_token_id is None:
        return None
    return session.get(QrDisplay, state.current_qr_token_id)


def qr_status(session: Session, egm_id: str, now: datetime) -> QrStatus:
    """The EGM's QR, failure streak and next retry, for the screen and the dumps."""
    state = session.get(QrState, egm_id)
    failing = state is not None and state.failures > 0
    display = current_qr(session, egm_id)
    return QrStatus(
        egm_id=egm_id, now=now, display=display,
        failures=state.failures if state else 0,
        error=state.last_error if failing and state else None,
        retry_at=state.next_acquire_at if failing and state else None,
        spent=display is not None and session.get(QrFunding, display.qr_token_id) is not None,
    )


def read_qr_status(db: Database, egm_id: str, now: datetime) -> QrStatus:
    """`qr_status` in a read transaction of its own, for callers that hold no session."""
    with db.read() as session:
        return qr_status(session, egm_id, now)


def rotates_at_for(now: datetime, expires_at: datetime, buffer_s: int) -> datetime:
    """`expiresAt - buffer`; if that is already past (lifetime <= buffer), halfway to expiry.

    Without the fallback a Trustly that issues short-lived tokens would be asked again on
    every rotation pass.
    """
    planned = expires_at - timedelta(seconds=buffer_s)
    return planned if planned > now else now + (expires_at - now) / 2


def backoff_s(failures: int, retry_after: int | None, cap_s: int) -> int:
    """Seconds to wait after the `failures`-th failure in a row: 1, 2, 4, ... up to `cap_s`.

    A Retry-After from Trustly is honoured even beyond the cap: retrying a locked-out
    credential early only prolongs the lockout.
    """
    delay: int = min(2 ** min(max(failures - 1, 0), MAX_BACKOFF_EXPONENT), max(cap_s, 1))
    return max(delay, retry_after or 0)


def acquire(ctx: CmsContext, egm_id: str) -> QrDisplay:
    """Get a new QR token from Trustly for this EGM now and make it the one on screen.

    Raises `EgmNotFound` for an unknown EGM (before calling Trustly) and `TrustlyUnavailable`
    after recording the failure and its backoff.
    """
    if egm_id not in ctx.known_egms:
        if not (EGM_ID.fullmatch(egm_id) and qr_store.egm_exists(ctx.db, egm_id)):
            raise EgmNotFound(egm_id)
        ctx.known_egms.add(egm_id)
    try:
        got = request_qr_token(ctx.settings.trustly, egm_id, transport=ctx.trustly_transport,
                               location_id=ctx.settings.location_id)
        return _record_success(ctx, egm_id, got)
    except TrustlyUnavailable as exc:
        _record_failure(ctx, egm_id, exc)
        raise


def _state_locked(session: Session, egm_id: str) -> QrState:
    """The EGM's QrState (created if missing), locked, under the EGM's row lock."""
    if lock_egm(session, egm_id) is None:
        raise EgmNotFound(egm_id)
    qr_store.ensure_state(session.connection(), egm_id)  # an acquisition may create it too
    state = session.get(QrState, egm_id, with_for_update=True, populate_existing=True)
    assert state is not None, "the state row exists after an insert-or-nothing"
    return state


def _record_success(ctx: CmsContext, egm_id: str, got: AcquiredQr) -> QrDisplay:
    now = ctx.clock.now()
    if got.expires_at <= now:
        raise TrustlyUnavailable("malformed", "expiresAt is not in the future", status=200)
    try:
        return _show(ctx, egm_id, got, now)
    except qr_store.TokenIdTaken as exc:
        raise TrustlyUnavailable("malformed", "Trustly reused a token id", status=200) from exc


def _show(ctx: CmsContext, egm_id: str, got: AcquiredQr, now: datetime) -> QrDisplay:
    """Record `got` as displayed on the EGM and make it the one on screen (clears failures).

    See `qr_store.record`; the returned display is a detached copy. EgmNotFound when the EGM
    does not exist; `qr_store.TokenIdTaken` when the token id was recorded before.
    """
    buffer_s = ctx.settings.rotation_buffer_s
    display = QrDisplay(
        qr_token_id=got.qr_token_id, egm_id=egm_id, url=got.url, token=got.token,
        expires_at=got.expires_at, displayed_at=now,
        rotates_at=rotates_at_for(now, got.expires_at, buffer_s),
    )
    if not qr_store.record(ctx.db, display):
        raise EgmNotFound(egm_id)
    return display


_DISPLAY_FIELDS = frozenset({"qrTokenId", "url", "expiresAt", "token"})
_TOKEN_ID = re.compile(rf"[!-~]{{1,{MAX_TOKEN_ID_CHARS}}}")  # what a funding's qrTokenId may be


def parse_display(body: Any) -> AcquiredQr:
    """Validate a control-API QR `{"url", "expiresAt", "qrTokenId"?, "token"?}`, or raise 400.

    `qrTokenId` defaults to the id an acquisition would record for that url (its last path
    segment), so a harness without a Trustly can show the same kind of QR a real one would.
    """
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(body) - _DISPLAY_FIELDS)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}", field=unknown[0])
    url, token = body.get("url"), body.get("token", "")
    if not isinstance(url, str) or not (url.isascii() and url.isprintable()
                                        and 0 < len(url) <= MAX_URL_BYTES):
        raise BadRequest(f"url must be 1-{MAX_URL_BYTES} printable ASCII characters",
                         field="url")
    if not isinstance(token, str):
        raise BadRequest("token must be a string", field="token")
    return AcquiredQr(url=url, token=token, expires_at=_display_expiry(body.get("expiresAt")),
                      qr_token_id=_display_token_id(body.get("qrTokenId"), url, token))


def _display_expiry(value: Any) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise BadRequest("expiresAt must be an ISO-8601 instant string", field="expiresAt")
    try:
        return parse_instant(value)
    except (ValueError, OverflowError) as exc:
        raise BadRequest(f"expiresAt is not an ISO-8601 instant: {value!r}",
                         field="expiresAt") from exc


def _display_token_id(value: Any, url: str, token: str) -> str:
    if value is None:
        try:
            return token_id(url, token)
        except TrustlyUnavailable as exc:
            raise BadRequest("the url names no token id; give qrTokenId",
                             field="qrTokenId") from exc
    if not isinstance(value, str) or not _TOKEN_ID.fullmatch(value):
        raise BadRequest(f"qrTokenId must be 1-{MAX_TOKEN_ID_CHARS} visible ASCII characters",
                         field="qrTokenId")
    return value


def register_display(ctx: CmsContext, egm_id: str, got: AcquiredQr) -> QrDisplay:
    """Show a QR on the EGM exactly as if `acquire` had got it from Trustly (control API).

    For tests and partner-less harness runs that need a displayed QR (a funding's qrTokenId
    is checked against it) without a Trustly. Refuses an expiry not after now (400) and a
    token id already recorded on any EGM (409 QR_TOKEN_ID_TAKEN), as an acquisition would.
    """
    now = ctx.clock.now()
    if got.expires_at <= now:
        raise BadRequest(f"expiresAt must be after the CMS's now ({format_instant(now)})",
                         field="expiresAt")
    taken = SimError("QR_TOKEN_ID_TAKEN", 409, f"QR token {got.qr_token_id} was already "
                     "displayed", qrTokenId=got.qr_token_id)
    try:
        return _show(ctx, egm_id, got, now)
    except qr_store.TokenIdTaken as exc:
        raise taken from exc


def _record_failure(ctx: CmsContext, egm_id: str, exc: TrustlyUnavailable) -> None:
    now = ctx.clock.now()
    with ctx.db.write() as session:
        state = _state_locked(session, egm_id)
        state.failures = (state.failures or 0) + 1
        wait = backoff_s(state.failures, exc.retry_after, ctx.settings.qr_retry_max_s)
        state.next_acquire_at = now + timedelta(seconds=wait)
        state.last_error, state.last_error_at = exc.describe()[:1000], now


def _due_clause(now: datetime) -> Any:
    no_qr_or_due = or_(QrDisplay.qr_token_id.is_(None), QrDisplay.rotates_at <= now,
                       QrFunding.qr_token_id.is_not(None))  # spent: replaced at once
    not_waiting = or_(QrState.next_acquire_at.is_(None), QrState.next_acquire_at <= now)
    return no_qr_or_due & not_waiting


def due_for_rotation(session: Session, now: datetime, egm_id: str | None = None) -> list[str]:
    """EGMs that need a QR now: none yet, past `rotates_at`, or spent (its token already
    paid a funding), and not backing off.

    `egm_id` narrows the question to one EGM (the screen's lazy check).
    """
    statement = (
        select(Egm.id)
        .outerjoin(QrState, QrState.egm_id == Egm.id)
        .outerjoin(QrDisplay, QrDisplay.qr_token_id == QrState.current_qr_token_id)
        .outerjoin(QrFunding, QrFunding.qr_token_id == QrState.current_qr_token_id)
        .where(_due_clause(now))
        .order_by(Egm.id)
    )
    if egm_id is not None:
        statement = statement.where(Egm.id == egm_id)
    return list(session.scalars(statement))


def _claim(ctx: CmsContext, egm_id: str) -> bool:
    """Take the EGM's next acquisition if it is still due (False: someone else has it)."""
    now = ctx.clock.now()
    link = ctx.settings.trustly
    lease = timedelta(seconds=link.connect_timeout_s + link.read_timeout_s + LEASE_MARGIN_S)
    with ctx.db.read() as session:  # most calls end here, without taking the write lock
        if not due_for_rotation(session, now, egm_id):
            return False
    with ctx.db.write() as session:
        state = _state_locked(session, egm_id)
        session.flush()
        if not due_for_rotation(session, now, egm_id):
            return False
        state.next_acquire_at = now + lease
        return True


def refresh_if_due(ctx: CmsContext, egm_id: str) -> bool:
    """Acquire for this EGM if it is due and claimed; a Trustly failure is recorded, not raised.

    The lazy path of the EGM screen and the one step of `rotate_due`. Returns True when a
    new QR was acquired.
    """
    if not _claim(ctx, egm_id):
        return False
    try:
        acquire(ctx, egm_id)
    except TrustlyUnavailable:
        return False
    return True


def rotate_due(ctx: CmsContext) -> RotationReport:
    """One rotation pass over every due EGM (what the background worker runs each tick)."""
    report = RotationReport()
    with ctx.db.read() as session:
        due = due_for_rotation(session, ctx.clock.now())
    for egm_id in due:
        if refresh_if_due(ctx, egm_id):
            report.acquired.append(egm_id)
            continue
        with ctx.db.read() as session:
            status = qr_status(session, egm_id, ctx.clock.now())
        if status.error is not None:
            report.failed[egm_id] = status.error
    return report


@dataclass
class RotationWorker:
    """The background thread that runs `rotate_due` every `interval_s` until stopped."""

    thread: threading.Thread
    stop_event: threading.Event

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the thread to finish its pass and wait for it."""
        self.stop_event.set()
        self.thread.join(timeout_s)


def start_rotation_worker(app: Any, interval_s: float = 1.0) -> RotationWorker:
    """Start rotating QRs for `app` (a sim_cms Flask app) in a daemon thread.

    Started by `scanpay serve`, never at import or in `create_app`: tests call `rotate_due`
    directly with a manual clock instead of waiting on a thread.
    """
    ctx: CmsContext = app.extensions["sim_cms"]
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            _rotate_safely(ctx)
            stop.wait(interval_s)

    thread = threading.Thread(target=run, name="sim-cms-qr-rotation", daemon=True)
    thread.start()
    return RotationWorker(thread=thread, stop_event=stop)


def _rotate_safely(ctx: CmsContext) -> None:
    """One pass; an unexpected error is logged and the next tick tries again."""
    try:
        rotate_due(ctx)
    except Exception:  # the worker must outlive a database hiccup
        log.exception("QR rotation pass failed")
