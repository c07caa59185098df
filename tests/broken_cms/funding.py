"""The broken Funding API: the product's own funding steps, recomposed with defects switched in.

`sim_cms.funding.decide.post_transaction` decides a funding in one unit of work built from small
steps (state and QR checks, limit checks, store a rejection, apply). This module composes
the very same steps, changing only the decision a defect is about, so a failure the harness
reports can only come from that defect:

- `no-idempotency`: the transactionId is never looked up. A request whose id was already
  decided is decided again and stored under a derived key (`<id>~again-<hex>`, because the
  product's unique keys would refuse the same one), answered under the original id, so a
  retry credits again (a new ledger transaction each time) and no answer is a replay.
- `limit-no-lock`: the daily-limit check uses the usage read *before* the unit of work takes
  its locks (and held for RACE_WINDOW_S, so racers really overlap); the application still
  adds to the locked row. Racing fundings each see room and all pass: usage ends over the
  limit. This is the check-then-act bug of `tests/e2e/unlocked_cms.py` made to bite on
  SQLite too: there, a deferred BEGIN only turns stale writers into 500s (SQLITE_BUSY), never
  into a second credit, while a read taken before BEGIN IMMEDIATE is stale on both backends.
- `wrong-error-codes`: the EGM-state refusals (EGM_OFFLINE, EGM_BUSY, EGM_DOOR_OPEN,
  EGM_TILT) are all answered 422 FUNDING_REJECTED.
- `credits-offline-egm`: the state check sees an OFFLINE EGM as IDLE, so its funding applies.
- `replay-outside-lock`: the transactionId is looked up once, before the unit of work takes
  its lock (then RACE_WINDOW_S passes, so twins really overlap), and never again inside it.
  A retry that arrives after the first answer is replayed as it should be, but identical
  fundings that arrive together all miss each other and are all applied (re-keyed as
  `no-idempotency` does, since the product's unique keys would refuse the same id).
- `slow-answer`: the funding is applied at once (re-keyed), but its outcome is stored under
  the transactionId only when the CMS answers, SLOW_ANSWER_S later. Meanwhile the status
  inquiry says FUNDING_NOT_FOUND and an identical retry finds nothing, so the retry TPAS
  sends after its read timeout is applied again.
- `many-fundings-per-qr`: the QR token's claim is ignored: a second transactionId naming a
  QR token that already paid is applied (its claim re-keyed, as the product's key would
  refuse it). The expiry check stays.
- `accepts-expired-qr`: the QR token's expiry is not checked: a token named an hour or a
  month after Trustly's expiry (and the product's grace) is applied.

The three defects that lose track of a transactionId (`no-idempotency`,
`replay-outside-lock`, `slow-answer`) also let a copy of that transactionId past the QR
token's claim its earlier copy made: with it, the product's one-funding-per-QR rule would
refuse the copies (QR_TOKEN_USED) and the defect would cost no money, while a CMS whose
idempotency fails this way credits every copy. Another transactionId on the QR is still
refused under them.

The view replaces `cms_funding_api.post_funding` in one app's view table (see
`tests.broken_cms.app`), so other apps in the same process stay correct.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime

from flask import Response, request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sim_cms import egms, ledger, limits
from sim_cms.context import cms
from sim_cms.funding import decide
from sim_cms.funding.api import REPLAY_HEADER
from sim_cms.funding.requests import FundingOutcome, FundingRequest, parse_funding_request
from sim_cms.models import Egm, LimitUsage, QrDisplay, QrFunding
from sim_cms.settings import CmsSettings
from simkit.db import Database
from simkit.errors import SimError
from simkit.http import read_json_body
from tests.broken_cms.defects import Defect

RACE_WINDOW_S = 0.05
SLOW_ANSWER_S = 1.0
GENERIC_CODE = "FUNDING_REJECTED"
STATE_CODES = frozenset(code for _, code, _ in decide._STATE_REFUSALS.values())
AGAIN_MARK = "~again-"

Defects = frozenset[Defect]
# Defects under which the unit of work does not look the transactionId up (it re-keys).
_BLIND_UNDER_LOCK = frozenset({Defect.NO_IDEMPOTENCY, Defect.REPLAY_OUTSIDE_LOCK,
                               Defect.SLOW_ANSWER})


def post_transaction(db: Database, funding: FundingRequest, settings: CmsSettings,
                     now: datetime, defects: Defects) -> FundingOutcome:
    """`decide.post_transaction` with `defects` (with none it decides exactly as the product)."""
    if Defect.NO_IDEMPOTENCY not in defects:
        with db.read() as session:
            known = ledger.get_funding(session, funding.transaction_id)
        if known is not None and known.fingerprint == funding.fingerprint():
            return FundingOutcome.from_record(known, replayed=True)
        if known is not None and defects & _BLIND_UNDER_LOCK:
            with db.write() as session:  # another body under a known id: refused, as the product
                egm = egms.lock_egm(session, funding.egm_id)
                return decide._replay_or_refuse_reuse(session, known, funding, now,
                                                     chain=decide._chain_of(egm, funding))
        if Defect.REPLAY_OUTSIDE_LOCK in defects:
            threading.Event().wait(RACE_WINDOW_S)  # the window between lookup and lock
    if Defect.SLOW_ANSWER in defects:
        return _apply_then_answer_slowly(db, funding, settings, now, defects)
    try:
        return _decide(db, funding, settings, now, defects)
    except IntegrityError:  # a racing twin stored the id first: decide again, as the product
        return _decide(db, funding, settings, now, defects)


def _decide(db: Database, funding: FundingRequest, settings: CmsSettings, now: datetime,
            defects: Defects) -> FundingOutcome:
    day = limits.gaming_day(now, settings)
    stale = _usage_before_lock(db, funding.ubai, day) \
        if Defect.LIMIT_NO_LOCK in defects else None
    stored_as = funding
    with db.write() as session:
        egm = egms.lock_egm(session, funding.egm_id)
        known = ledger.get_funding(session, funding.transaction_id)
        if known is not None:
            if not defects & _BLIND_UNDER_LOCK:
                return decide._replay_or_refuse_reuse(session, known, funding, now,
                                                     chain=decide._chain_of(egm, funding))
            stored_as = replace(funding, transaction_id=_another_key(funding.transaction_id))
        outcome = _decide_locked(session, egm, stored_as, settings, day, now, defects, stale)
    return outcome if stored_as is funding else _answered_as(outcome, funding)


def _apply_then_answer_slowly(db: Database, funding: FundingRequest, settings: CmsSettings,
                              now: datetime, defects: Defects) -> FundingOutcome:
    """Decide under a fresh key now; store the outcome under the transactionId only when the
    answer finally goes out, SLOW_ANSWER_S later (the first such answer's record wins)."""
    keyed = replace(funding, transaction_id=_another_key(funding.transaction_id))
    outcome = _answered_as(_decide(db, keyed, settings, now, defects), funding)
    threading.Event().wait(SLOW_ANSWER_S)  # the slow answer, past TPAS's read timeout
    day = limits.gaming_day(now, settings)
    try:
        with db.write() as session:
            ledger.insert_funding(session.connection(), funding, outcome, day, now)
    except IntegrityError:  # a retry's answer went out first and stored its own outcome
        pass
    return outcome


def _decide_locked(session: Session, egm: Egm | None, funding: FundingRequest,
                   settings: CmsSettings, day: date, now: datetime, defects: Defects,
                   stale: LimitUsage | None) -> FundingOutcome:
    """The product's checks in the product's order, then store the rejection or apply."""
    refusal = _refusal_before_limits(session, egm, funding, defects)
    if refusal is None and egm is not None:
        refusal = _refusal_by_qr_use(session, egm, funding, settings, now, defects)
    if refusal is not None or egm is None:
        return decide._store_rejection(session, funding, refusal, day, now,
                                       chain=decide._chain_of(egm, funding))
    usage = limits.lock_usage(session, funding.ubai, day)
    refusal = decide._refusal_by_limits(session, egm, stale or usage, funding, settings)
    if refusal is not None:
        return decide._store_rejection(session, funding, refusal, day, now,
                                       chain=decide._chain_of(egm, funding))
    return decide._apply(session, egm, usage, _claimable(session, funding, defects), day=day,
                         now=now)


def _refusal_by_qr_use(session: Session, egm: Egm, funding: FundingRequest,
                       settings: CmsSettings, now: datetime,
                       defects: Defects) -> SimError | None:
    """The product's one-funding-per-QR and expiry check, blind to the claim if a defect is."""
    claim = session.get(QrFunding, funding.qr_token_id)
    display = session.get(QrDisplay, funding.qr_token_id)
    funded_by = None if claim is None or _passes_claim(claim, funding, defects) \
        else claim.transaction_id
    expires_at = None if display is None or Defect.ACCEPTS_EXPIRED_QR in defects \
        else display.expires_at
    return decide._refusal_by_qr_use(
        egm, funding, expires_at=expires_at,
        funded_by=funded_by, now=now, grace_s=settings.funding_grace_s)


def _claimable(session: Session, funding: FundingRequest, defects: Defects) -> FundingRequest:
    """`funding`, or a copy under a fresh QR key when a defect applies a claimed QR again."""
    claim = session.get(QrFunding, funding.qr_token_id)
    if claim is None or not _passes_claim(claim, funding, defects):
        return funding
    return replace(funding, qr_token_id=_another_key(funding.qr_token_id))


def _passes_claim(claim: QrFunding, funding: FundingRequest, defects: Defects) -> bool:
    """Whether a defect lets `funding` past the QR token's `claim`: any funding when the claim
    is ignored, a copy of the claiming transactionId when copies are not recognised."""
    if Defect.MANY_FUNDINGS_PER_QR in defects:
        return True
    return bool(defects & _BLIND_UNDER_LOCK) and \
        _original_id(claim.transaction_id) == _original_id(funding.transaction_id)


def _original_id(transaction_id: str) -> str:
    """The transactionId a re-keyed storage key was made from (the first 100 characters)."""
    return transaction_id.partition(AGAIN_MARK)[0][:100]


def _refusal_before_limits(session: Session, egm: Egm | None, funding: FundingRequest,
                           defects: Defects) -> SimError | None:
    seen = egm
    if egm is not None and egm.state == "OFFLINE" and Defect.CREDITS_OFFLINE_EGM in defects:
        seen = _idle_copy(egm)
    refusal = decide._refusal_before_limits(session, seen, funding)
    if refusal is None or refusal.code not in STATE_CODES \
            or Defect.WRONG_ERROR_CODES not in defects:
        return refusal
    return SimError(GENERIC_CODE, 422, f"EGM {funding.egm_id} cannot take credit now",
                    transactionId=funding.transaction_id)


def _idle_copy(egm: Egm) -> Egm:
    """A transient (never added) copy of `egm` in state IDLE, for the state check alone."""
    return Egm(id=egm.id, name=egm.name, state="IDLE", credit_meter=egm.credit_meter,
               credit_limit=egm.credit_limit, currency=egm.currency, updated_at=egm.updated_at)


def _usage_before_lock(db: Database, ubai: str, day: date) -> LimitUsage:
    """What the limit check will believe `ubai` used today: read unlocked, then kept a while."""
    with db.read() as session:
        used = limits.used_on(session, ubai, day)
    threading.Event().wait(RACE_WINDOW_S)  # the window between check and act, made wide
    return LimitUsage(ubai=ubai, gaming_day=day, used=used)  # transient: never added


def _another_key(transaction_id: str) -> str:
    """A fresh storage key for a transactionId decided before (fits the 128-character id)."""
    return f"{transaction_id[:100]}{AGAIN_MARK}{uuid.uuid4().hex[:12]}"


def _answered_as(outcome: FundingOutcome, funding: FundingRequest) -> FundingOutcome:
    """The outcome of a re-keyed decision, answered under the id the caller sent."""
    body = json.loads(outcome.body)
    body["transactionId"] = funding.transaction_id
    return FundingOutcome(outcome.http_status, json.dumps(body), outcome.code, outcome.replayed)


def make_funding_view(defects: Defects) -> Callable[[], Response]:
    """A `POST /cws/v1/fundings` view like `funding_api.post_funding`, deciding with `defects`."""

    def post_funding() -> Response:
        ctx = cms()
        funding = parse_funding_request(read_json_body(request, ctx.settings.max_body_bytes))
        outcome = post_transaction(ctx.db, funding, ctx.settings, ctx.clock.now(), defects)
        response = Response(outcome.body, status=outcome.http_status,
                            mimetype=outcome.media_type)
        if outcome.replayed:
            response.headers[REPLAY_HEADER] = "true"
        return response

    return post_funding
