"""A Hypothesis state machine drives the Funding API against a plain Python model.

Rules: new fundings (any EGM, state, amount, currency, QR), identical retries, retries with
one field changed, status inquiries, limit edits, EGM state changes, and clock moves across
the 06:00 gaming-day boundary (starting the day before a DST change). After every step the
database must agree with the model and with itself: entries sum to zero, each meter equals
its entries and the model, usage equals the model and never exceeds the limit, one ledger
transaction per transactionId at most, and the audit chain verifies.

One app serves every example; each example starts from `POST /_sim/reset` (building an app
per example would cost more than the example). A failure prints the steps and the reproducing
blob (`print_blob=True`): put the `@reproduce_failure(...)` line it shows above
`class FundingMachine` to replay exactly that case.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sim_cms import audit
from sim_cms.models import (
    AuditRecord,
    Egm,
    LedgerEntry,
    LedgerTransaction,
    LimitUsage,
    QrDisplay,
)
from sim_cms.seed import meter_account_id
from sim_cms.settings import EgmConfig
from simkit.db import sqlite_url
from tests.conftest import ADMIN_TOKEN, CmsFactory, cms_bearer

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ZONE = ZoneInfo("America/Los_Angeles")
START = datetime(2026, 10, 31, 12, 0, tzinfo=UTC)  # 05:00 PDT; DST ends on 1 November
EGM_IDS = ("EGM-001", "EGM-002", "EGM-003")
CREDIT_CAP = 60_000
DEFAULT_LIMIT = 30_000
UBAIS = ("ubai-a", "ubai-b")
STATE_REFUSALS = {"OFFLINE": (503, "EGM_OFFLINE"), "IN_GAME": (409, "EGM_BUSY"),
                  "DOOR_OPEN": (409, "EGM_DOOR_OPEN"), "TILT": (409, "EGM_TILT")}
AMOUNTS = st.one_of(st.integers(1, 25_000), st.sampled_from([0, -1, 30_000, CREDIT_CAP]))
MACHINE_SETTINGS: dict[str, Any] = {
    "egms": tuple(EgmConfig(e, e, credit_limit=CREDIT_CAP) for e in EGM_IDS),
    "default_daily_limit": DEFAULT_LIMIT, "max_daily_limit": 100_000,
    "journal": False,  # the journal is not under test; it would double the writes per step
}

# How `retry_changed` alters each field: always to a different, well-formed value.
CHANGES: dict[str, Any] = {
    "egmId": lambda v: "EGM-001" if v == "EGM-003" else "EGM-003",
    "amount": lambda v: v + 1,
    "currency": lambda v: "EUR" if v == "USD" else "USD",
    "ubai": lambda v: v + "-x",
    "qrTokenId": lambda v: v + "-x",
}


GRACE = timedelta(seconds=3600)  # CmsSettings.funding_grace_s, its default


def gaming_day(now: datetime) -> date:
    """The model's own gaming day: local wall time minus the 6 h day start."""
    return (now.astimezone(ZONE).replace(tzinfo=None) - timedelta(hours=6)).date()


def next_day_start(now: datetime) -> datetime:
    """The next 06:00 local wall time after `now`, as UTC."""
    day = gaming_day(now) + timedelta(days=1)
    return datetime(day.year, day.month, day.day, 6, tzinfo=ZONE).astimezone(UTC)


@dataclass
class Sent:
    """A funding the machine sent: its body and the answer it got."""

    body: dict[str, Any]
    status: int
    data: bytes


@dataclass
class Model:
    """What the CMS should hold, computed without the CMS's code."""

    now: datetime = START
    states: dict[str, str] = field(default_factory=lambda: dict.fromkeys(EGM_IDS, "IDLE"))
    meters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EGM_IDS, 0))
    limits: dict[str, int] = field(default_factory=dict)
    usage: dict[tuple[str, date], int] = field(default_factory=dict)
    peak_limit: dict[tuple[str, date], int] = field(default_factory=dict)
    sent: dict[str, Sent] = field(default_factory=dict)
    shown: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # qr: EGM, expiry
    paid_by: dict[str, str] = field(default_factory=dict)  # qr: the transactionId it paid
    decisions: int = 0
    applied: int = 0

    def limit(self, ubai: str) -> int:
        return self.limits.get(ubai, DEFAULT_LIMIT)

    def expect(self, body: dict[str, Any]) -> tuple[int, str | None]:
        """The status and code the CMS must answer to a new funding `body`."""
        egm, amount = body["egmId"], body["amount"]
        key = (body["ubai"], gaming_day(self.now))
        if egm not in self.states:
            return 404, "EGM_NOT_FOUND"
        if self.states[egm] in STATE_REFUSALS:
            return STATE_REFUSALS[self.states[egm]]
        if amount <= 0 or body["currency"] != "USD":
            return 422, "INVALID_AMOUNT"
        shown = self.shown.get(body["qrTokenId"])
        if shown is None or shown[0] != egm:
            return 422, "QR_TOKEN_MISMATCH"
        if body["qrTokenId"] in self.paid_by:
            return 422, "QR_TOKEN_USED"
        if self.now > shown[1] + GRACE:
            return 422, "QR_TOKEN_EXPIRED"
        if self.meters[egm] + amount > CREDIT_CAP:
            return 422, "CREDIT_LIMIT_EXCEEDED"
        if self.usage.get(key, 0) + amount > self.limit(body["ubai"]):
            return 422, "DAILY_LIMIT_EXCEEDED"
        return 201, None

    def apply(self, body: dict[str, Any]) -> None:
        key = (body["ubai"], gaming_day(self.now))
        self.meters[body["egmId"]] += body["amount"]
        self.usage[key] = self.usage.get(key, 0) + body["amount"]
        self.peak_limit[key] = max(self.peak_limit.get(key, 0), self.limit(body["ubai"]))
        self.paid_by[body["qrTokenId"]] = body["transactionId"]
        self.applied += 1


class FundingMachine(RuleBasedStateMachine):
    """Fundings, retries, limit edits, EGM states and day changes against `Model`."""

    app: Flask
    fundings = Bundle("fundings")

    def __init__(self) -> None:
        super().__init__()
        self.client: FlaskClient = self.app.test_client()
        self.model = Model()
        self.auth: dict[str, str] = {}
        self.counter = 0

    @initialize()
    def reset(self) -> None:
        assert self.client.post("/_sim/reset", headers=ADMIN).status_code == 200
        assert self.client.post("/_sim/clock", json={"set": START.isoformat()},
                                headers=ADMIN).status_code == 200
        self.auth = cms_bearer(self.client)

    def _show(self, egm: str, *, expires_at: datetime | None = None) -> str:
        """A new QR token shown on `egm` now (Trustly's expiry: now, unless given)."""
        self.counter += 1
        token, expiry = f"qr-{self.counter}", expires_at or self.model.now
        with self.app.extensions["sim_cms"].db.write() as session:
            session.add(QrDisplay(qr_token_id=token, egm_id=egm, url="u", token="t",
                                  expires_at=expiry, rotates_at=expiry,
                                  displayed_at=self.model.now))
        self.model.shown[token] = (egm, expiry)
        return token

    def _qr_for(self, egm: str, qr_of: str | None) -> str:
        """The QR token a new funding names: one of its own shown on `egm` (the common case),
        one shown on another EGM, one never shown, one that already paid, or one shown so
        long ago that it expired more than the grace ago."""
        if qr_of == "nowhere":
            return "qr-never-shown"
        if qr_of == "paid" and self.model.paid_by:
            return sorted(self.model.paid_by)[-1]
        if qr_of == "stale":
            return self._show(egm, expires_at=self.model.now - GRACE - timedelta(seconds=1))
        return self._show(qr_of if qr_of in EGM_IDS else egm)

    # --- fundings ---------------------------------------------------------------------

    def _send_new(self, egm: str, ubai: str, amount: int, currency: str = "USD",
                  qr_of: str | None = None) -> str:
        """Send a funding under a new transactionId; the answer must be the model's."""
        token = self._qr_for(egm, qr_of)
        self.counter += 1
        tid = f"tx-{self.counter}"
        body: dict[str, Any] = {"transactionId": tid, "egmId": egm, "amount": amount,
                "currency": currency, "ubai": ubai, "qrTokenId": token}
        status, code = self.model.expect(body)
        response = self.client.post("/cws/v1/fundings", json=body, headers=self.auth)
        assert response.status_code == status, response.get_data(as_text=True)
        assert response.get_json().get("code") == code
        self.model.decisions += 1
        if status == 201:
            self.model.apply(body)
            assert response.get_json()["creditMeter"] == self.model.meters[egm]
        self.model.sent[tid] = Sent(body, status, response.data)
        return tid

    @rule(target=fundings, egm=st.sampled_from((*EGM_IDS, "EGM-404")),
          ubai=st.sampled_from(UBAIS), amount=AMOUNTS,
          currency=st.sampled_from(("USD", "USD", "USD", "EUR")),
          qr_of=st.sampled_from((None, None, None, "EGM-002", "nowhere", "paid", "stale")))
    def fund(self, egm: str, ubai: str, amount: int, currency: str, qr_of: str | None) -> str:
        return self._send_new(egm, ubai, amount, currency, qr_of)

    @rule(target=fundings, egm=st.sampled_from(EGM_IDS), ubai=st.sampled_from(UBAIS),
          edge=st.sampled_from(("daily-limit", "credit-cap")), over=st.booleans())
    def fund_at_an_edge(self, egm: str, ubai: str, edge: str, over: bool) -> str:
        """Exactly what the daily limit or the meter cap still allows, or one more."""
        if edge == "daily-limit":
            used = self.model.usage.get((ubai, gaming_day(self.model.now)), 0)
            room = self.model.limit(ubai) - used
        else:
            room = CREDIT_CAP - self.model.meters[egm]
        return self._send_new(egm, ubai, max(room, 0) + int(over))

    @rule(tid=fundings, how=st.sampled_from(("retry", "retry-reordered", "inquire")))
    def revisit(self, tid: str, how: str) -> None:
        """An identical retry replays byte for byte; an inquiry tells the same outcome."""
        sent = self.model.sent[tid]
        if how == "inquire":
            document = self.client.get(f"/cws/v1/fundings/{tid}", headers=self.auth).get_json()
            assert document["status"] == ("APPLIED" if sent.status == 201 else "REJECTED")
            assert document["httpStatus"] == sent.status
            assert document["response"] == json.loads(sent.data)
            return
        members = list(sent.body.items())
        raw = json.dumps(dict(reversed(members) if how == "retry-reordered" else members))
        response = self.client.post("/cws/v1/fundings", data=raw,
                                    content_type="application/json", headers=self.auth)
        assert (response.status_code, response.data) == (sent.status, sent.data)
        assert response.headers["Idempotent-Replayed"] == "true"

    @rule(tid=fundings, name=st.sampled_from(("egmId", "amount", "currency", "ubai",
                                              "qrTokenId")))
    def retry_changed(self, tid: str, name: str) -> None:
        body = dict(self.model.sent[tid].body)
        body[name] = CHANGES[name](body[name])
        response = self.client.post("/cws/v1/fundings", json=body, headers=self.auth)
        assert response.status_code == 422
        assert response.get_json()["code"] == "IDEMPOTENCY_KEY_REUSED"
        self.model.decisions += 1

    # --- limits, EGMs, clock ----------------------------------------------------------

    @rule(ubai=st.sampled_from(UBAIS), value=st.none() | st.integers(0, 100_000))
    def edit_limit(self, ubai: str, value: int | None) -> None:
        """Set a limit (PUT), or go back to the default (DELETE, when `value` is None)."""
        if value is None:
            response = self.client.delete(f"/cws/v1/limits/{ubai}", headers=self.auth)
            self.model.limits.pop(ubai, None)
        else:
            response = self.client.put(f"/cws/v1/limits/{ubai}", json={"dailyLimit": value},
                                       headers=self.auth)
            self.model.limits[ubai] = value
        assert response.status_code in (200, 201), response.get_data(as_text=True)

    @rule(egm=st.sampled_from(EGM_IDS),
          state=st.sampled_from(("IDLE", "IDLE", "IN_GAME", "DOOR_OPEN", "TILT", "OFFLINE")))
    def set_state(self, egm: str, state: str) -> None:
        response = self.client.post(f"/_sim/egms/{egm}", json={"state": state}, headers=ADMIN)
        assert response.status_code == 200, response.get_data(as_text=True)
        self.model.states[egm] = state

    @rule(move=st.sampled_from(("minutes", "hours", "just-before-day-start", "day-start")))
    def move_clock(self, move: str) -> None:
        now = self.model.now
        target = {
            "minutes": now + timedelta(minutes=10),
            "hours": now + timedelta(hours=7),
            "just-before-day-start": next_day_start(now) - timedelta(milliseconds=1),
            "day-start": next_day_start(now),
        }[move]
        response = self.client.post("/_sim/clock", json={"set": target.isoformat()},
                                    headers=ADMIN)
        assert response.status_code == 200
        self.model.now = target
        self.auth = cms_bearer(self.client)  # tokens live 300 s on the same clock

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def database_agrees_with_itself_and_the_model(self) -> None:
        # One session for every check: each step is followed by this, so it must be cheap.
        with self.app.extensions["sim_cms"].db.read() as session:
            self._check_ledger(session)
            self._check_usage(session)
            assert audit.verify_chain(session).ok
            decisions = session.scalar(select(func.count()).select_from(AuditRecord)
                                       .where(AuditRecord.kind.like("FUNDING_%")))
            assert decisions == self.model.decisions

    def _check_ledger(self, session: Session) -> None:
        """Entries balance, meters equal their entries and the model, one transaction per id.

        Computed here with grouped queries rather than through the ledger's own helpers, so
        the check does not share the code it checks (and stays cheap enough for every step).
        """
        unbalanced = session.execute(
            select(LedgerEntry.transaction_id).group_by(LedgerEntry.transaction_id)
            .having(func.sum(LedgerEntry.amount) != 0)).all()
        assert unbalanced == []
        balances = dict(session.execute(
            select(LedgerEntry.account_id, func.sum(LedgerEntry.amount))
            .group_by(LedgerEntry.account_id)).all())
        assert sum(balances.values()) == 0
        meters = dict(session.execute(select(Egm.id, Egm.credit_meter)).all())
        assert meters == self.model.meters
        assert {e: balances.get(meter_account_id(e), 0) for e in meters} == meters
        count, distinct = session.execute(
            select(func.count(), func.count(LedgerTransaction.reference.distinct()))).one()
        assert count == distinct == self.model.applied

    def _check_usage(self, session: Session) -> None:
        """Usage equals the model's and never exceeds the highest limit in force that day."""
        usage = {(u.ubai, u.gaming_day): u.used for u in session.scalars(select(LimitUsage))
                 if u.used}
        assert usage == self.model.usage
        for key, used in usage.items():
            assert used <= self.model.peak_limit[key]


def test_ledger_state_machine(make_cms: CmsFactory) -> None:
    # SQLite on tmpfs where there is one: the ledger commits with synchronous=FULL, and
    # thousands of fsyncs would measure the disk rather than the CMS.
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as scratch:
        app = make_cms(database_url=sqlite_url(str(Path(scratch) / "cms.db")), **MACHINE_SETTINGS)
        machine = type("BoundFundingMachine", (FundingMachine,), {"app": app})
        run_state_machine_as_test(machine, settings=settings(
            max_examples=200, stateful_step_count=20, deadline=None, print_blob=True,
            suppress_health_check=[HealthCheck.too_slow],
        ))
        app.extensions["sim_cms"].close()
