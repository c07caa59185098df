"""The Funding API's service: one decision per transactionId, taken under the write lock.

The replay lookup, every check, the credit, the QR token's use and the stored decision are
one SQLite write transaction, so copies of a funding racing each other are applied once and
the others replay the stored answer. Rejections are decisions too, stored and replayed.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from datetime import timedelta
from typing import Any

from tests.docs_cms.clock import OffsetClock, gaming_day, iso, parse_instant
from tests.docs_cms.defects import SLOW_ANSWER_S
from tests.docs_cms.limits import LimitBook
from tests.docs_cms.problems import Answer, Refused, dump, ok, problem
from tests.docs_cms.store import Store

FIELDS = ("transactionId", "egmId", "amount", "currency", "ubai", "qrTokenId")
PATTERNS = {
    "transactionId": re.compile(r"[A-Za-z0-9._:~-]{1,128}"),
    "egmId": re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}"),
    "currency": re.compile(r"[A-Z]{3}"),
    "ubai": re.compile(r"[A-Za-z0-9._:-]{1,128}"),
    "qrTokenId": re.compile(r"[!-~]{1,128}"),
}
MAX_AMOUNT = 10**12
# A credit is confirmed by the EGM before it counts; this is that round trip.
EGM_ROUND_TRIP_S = 0.02
# A QR token stays fundable this long after Trustly's expiry (a player who paid just before).
FUNDING_GRACE = timedelta(hours=1)
STATE_REFUSALS = {"IN_GAME": (409, "EGM_BUSY"), "DOOR_OPEN": (409, "EGM_DOOR_OPEN"),
                  "TILT": (409, "EGM_TILT"), "OFFLINE": (503, "EGM_OFFLINE")}


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_request(raw: bytes) -> dict[str, Any]:
    """The six fields of a funding, or Refused (400) naming what is wrong."""
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(problem(400, "INVALID_REQUEST", "The body is not JSON.")) from exc
    if not isinstance(body, dict):
        raise Refused(problem(400, "INVALID_REQUEST", "The body must be a JSON object."))
    for name in FIELDS:
        value = body.get(name)
        if name == "amount":
            good = (isinstance(value, int) and not isinstance(value, bool)
                    and value <= MAX_AMOUNT)
        else:
            good = isinstance(value, str) and PATTERNS[name].fullmatch(value) is not None
        if not good:
            detail = "missing" if name not in body else "of the wrong type or form"
            raise Refused(problem(400, "VALIDATION_ERROR", f"{name} is {detail}.", field=name))
    return {name: body[name] for name in FIELDS}


class FundingDesk:
    """Decides fundings."""

    def __init__(self, store: Store, clock: OffsetClock, limits: LimitBook,
                 defect: str | None = None) -> None:
        self.store, self.clock, self.limits, self.defect = store, clock, limits, defect

    def fund(self, request: dict[str, Any]) -> Answer:
        """Apply or refuse `request` once; replay the stored answer to every copy."""
        key = dump([request[name] for name in FIELDS])
        txid = request["transactionId"]
        if self.defect == "replay-outside-lock":
            return self._fund_checking_outside_the_lock(request, key)
        try:
            with self.store.write() as db:
                earlier = self._replay(db, txid, key)
                if earlier is not None:
                    return earlier
                refusal = self._check(db, request)
                answer = refusal or self._apply(db, request)
                if self.defect == "slow-answer" and refusal is None:
                    pending: tuple[dict[str, Any], str, Answer] | None = (request, key, answer)
                else:
                    self._record(db, request, key, answer)
                    pending = None
        except sqlite3.OperationalError:  # the write lock did not come in time
            return problem(409, "FUNDING_IN_PROGRESS", "Another request with this "
                           "transactionId is being decided; retry it.", transactionId=txid)
        if pending is not None:
            threading.Event().wait(SLOW_ANSWER_S)  # the slow EGM acknowledgement
            with self.store.write() as db:
                self._record(db, *pending)
        return answer

    def _fund_checking_outside_the_lock(self, request: dict[str, Any], key: str) -> Answer:
        """The planted defect: replay lookup and checks read first, the credit written after."""
        with self.store.read() as db:
            earlier = self._replay(db, request["transactionId"], key)
            if earlier is not None:
                return earlier
            refusal = self._check(db, request)
        with self.store.write() as db:
            answer = refusal or self._apply(db, request)
            self._record(db, request, key, answer)
        return answer

    def _replay(self, db: sqlite3.Connection, txid: str, key: str) -> Answer | None:
        row = db.execute("SELECT request_key, http_status, body FROM fundings "
                         "WHERE transaction_id = ?", (txid,)).fetchone()
        if row is None:
            return None
        if row["request_key"] != key:
            return problem(422, "IDEMPOTENCY_KEY_REUSED", "This transactionId was used for "
                           "another request.", transactionId=txid)
        content_type = "application/json" if row["http_status"] == 201 else \
            "application/problem+json"
        return Answer(row["http_status"], row["body"], {"Idempotent-Replayed": "true"},
                      content_type)

    def _record(self, db: sqlite3.Connection, request: dict[str, Any], key: str,
                answer: Answer) -> None:
        now = self.clock.now()
        body = json.loads(answer.body)
        outcome = "APPLIED" if answer.status == 201 else "REJECTED"
        db.execute("INSERT OR REPLACE INTO fundings VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (request["transactionId"], key, request["egmId"], request["amount"],
                    request["currency"], request["ubai"], request["qrTokenId"], outcome,
                    answer.status, body.get("code"), answer.body, iso(now),
                    gaming_day(now).isoformat()))
        if outcome == "APPLIED":  # the QR token paid: it pays nothing else, ever
            db.execute("UPDATE qrs SET funded_by = ? WHERE code = ?",
                       (request["transactionId"], request["qrTokenId"]))

    def _check(self, db: sqlite3.Connection, req: dict[str, Any]) -> Answer | None:
        """The refusal, checked in the documented order, or None when the funding may apply."""
        txid, egm_id, amount = req["transactionId"], req["egmId"], req["amount"]
        now = self.clock.now()

        def refuse(status: int, code: str, detail: str, **extra: Any) -> Answer:
            return problem(status, code, detail, transactionId=txid, **extra)

        egm = db.execute("SELECT * FROM egms WHERE id = ?", (egm_id,)).fetchone()
        if egm is None:
            return refuse(404, "EGM_NOT_FOUND", "No such EGM.", egmId=egm_id)
        if egm["state"] in STATE_REFUSALS:
            status, code = STATE_REFUSALS[egm["state"]]
            return refuse(status, code, f"The EGM is {egm['state']}.", egmId=egm_id,
                          state=egm["state"])
        if amount <= 0:
            return refuse(422, "INVALID_AMOUNT", "The amount must be positive.",
                          field="amount")
        if req["currency"] != egm["currency"]:
            return refuse(422, "CURRENCY_MISMATCH", "The EGM holds another currency.",
                          field="currency", expected=egm["currency"])
        qr = db.execute("SELECT * FROM qrs WHERE code = ?", (req["qrTokenId"],)).fetchone()
        if qr is None or qr["egm_id"] != egm_id:
            return refuse(422, "QR_TOKEN_MISMATCH", "This QR token was never shown on "
                          "this EGM.", egmId=egm_id)
        if qr["funded_by"] is not None and self.defect != "many-fundings-per-qr":
            return refuse(422, "QR_TOKEN_USED", "This QR token already paid a funding.",
                          egmId=egm_id, fundedBy=qr["funded_by"])
        expired_at = parse_instant(qr["expires_at"])
        if now > expired_at + FUNDING_GRACE and self.defect != "accept-expired-qr":
            return refuse(422, "QR_TOKEN_EXPIRED", "This QR token expired.", egmId=egm_id,
                          expiredAt=iso(expired_at))
        meter, cap = egm["credit_meter"], egm["credit_limit"]
        if meter + amount > cap:
            return refuse(422, "CREDIT_LIMIT_EXCEEDED", "The meter cannot take that much.",
                          egmId=egm_id, creditMeter=meter, creditLimit=cap,
                          available=cap - meter)
        if self.defect != "no-daily-limit":
            view = self.limits.view(db, req["ubai"], now)
            if amount > view["remainingToday"]:
                return refuse(422, "DAILY_LIMIT_EXCEEDED", "Over the daily limit.",
                              remaining=view["remainingToday"], dailyLimit=view["dailyLimit"],
                              gamingDay=view["gamingDay"])
        return None

    def _apply(self, db: sqlite3.Connection, req: dict[str, Any]) -> Answer:
        """Credit the meter (relative to what it holds now) and write both ledger legs."""
        threading.Event().wait(EGM_ROUND_TRIP_S)
        db.execute("UPDATE egms SET credit_meter = credit_meter + ? WHERE id = ?",
                   (req["amount"], req["egmId"]))
        meter = db.execute("SELECT credit_meter FROM egms WHERE id = ?",
                           (req["egmId"],)).fetchone()[0]
        db.executemany("INSERT INTO ledger (txn, account, amount) VALUES (?, ?, ?)",
                       [(req["transactionId"], "trustly-clearing", -req["amount"]),
                        (req["transactionId"], f"egm:{req['egmId']}", req["amount"])])
        return ok(201, {"transactionId": req["transactionId"], "status": "APPLIED",
                        "egmId": req["egmId"], "amount": req["amount"],
                        "currency": req["currency"], "creditMeter": meter,
                        "appliedAt": iso(self.clock.now())})

    def status(self, txid: str) -> Answer:
        """The status inquiry: the stored decision, or 404 when none was taken."""
        with self.store.read() as db:
            row = db.execute("SELECT * FROM fundings WHERE transaction_id = ?",
                             (txid,)).fetchone()
        if row is None:
            return problem(404, "FUNDING_NOT_FOUND", "Nothing was decided under this id.",
                           transactionId=txid)
        view: dict[str, Any] = {"transactionId": txid, "status": row["outcome"],
                                "httpStatus": row["http_status"], "egmId": row["egm_id"],
                                "amount": row["amount"], "currency": row["currency"],
                                "decidedAt": row["decided_at"],
                                "response": json.loads(row["body"])}
        if row["code"]:
            view["code"] = row["code"]
        return ok(200, view)

