"""Daily limits per UBAI: the Daily Limits API's service and the view fundings check against.

Usage is what was applied to the UBAI on the current gaming day; editing a limit never resets
it. The funding's check reads the view inside the funding's own write transaction, so racing
fundings cannot both take the last room.
"""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime
from typing import Any

from tests.docs_cms.clock import OffsetClock, gaming_day, iso
from tests.docs_cms.problems import Answer, Refused, ok, problem
from tests.docs_cms.store import Store

UBAI = re.compile(r"[A-Za-z0-9._:-]{1,128}")
DEFAULT_LIMIT = 100_000
LIMIT_CAP = 1_000_000
CURRENCY = "USD"


def check_ubai(ubai: str) -> None:
    """Refused (400 INVALID_UBAI) unless `ubai` has the UBAI form."""
    if UBAI.fullmatch(ubai) is None:
        raise Refused(problem(400, "INVALID_UBAI", "Not a UBAI.", field="ubai"))


def parse_change(raw: bytes) -> int:
    """The dailyLimit of a PUT or PATCH body, or Refused naming what is wrong."""
    try:
        body = json.loads(raw, parse_constant=lambda name: float("nan"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(problem(400, "INVALID_REQUEST", "The body is not JSON.")) from exc
    if not isinstance(body, dict):
        raise Refused(problem(400, "INVALID_REQUEST", "The body must be a JSON object."))
    unknown = sorted(set(body) - {"dailyLimit", "currency"})
    if unknown:
        raise Refused(problem(400, "INVALID_REQUEST", "Unknown member.", field=unknown[0]))
    limit = body.get("dailyLimit")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise Refused(problem(400, "INVALID_REQUEST", "dailyLimit must be an integer >= 0.",
                              field="dailyLimit"))
    if "currency" in body:
        currency = body["currency"]
        if not isinstance(currency, str) or re.fullmatch(r"[A-Z]{3}", currency) is None:
            raise Refused(problem(400, "INVALID_REQUEST", "currency must be ISO 4217.",
                                  field="currency"))
        if currency != CURRENCY:
            raise Refused(problem(422, "CURRENCY_MISMATCH", "Not the casino's currency.",
                                  field="currency", expected=CURRENCY))
    if limit > LIMIT_CAP:
        raise Refused(problem(422, "LIMIT_ABOVE_CAP", "Above the cap.", field="dailyLimit",
                              cap=LIMIT_CAP))
    return limit


class LimitBook:
    """Reads and edits the UBAIs' daily limits."""

    def __init__(self, store: Store, clock: OffsetClock) -> None:
        self.store, self.clock = store, clock

    def view(self, db: sqlite3.Connection, ubai: str, now: datetime) -> dict[str, Any]:
        """The limit, today's usage and what remains, read through `db`."""
        day = gaming_day(now).isoformat()
        row = db.execute("SELECT daily_limit, updated_at FROM limits WHERE ubai = ?",
                         (ubai,)).fetchone()
        used = db.execute("SELECT COALESCE(SUM(amount), 0) FROM fundings WHERE ubai = ? "
                          "AND gaming_day = ? AND outcome = 'APPLIED'", (ubai, day)).fetchone()[0]
        limit = row["daily_limit"] if row else DEFAULT_LIMIT
        return {"ubai": ubai, "dailyLimit": limit, "currency": CURRENCY, "usedToday": used,
                "remainingToday": max(0, limit - used), "gamingDay": day,
                "updatedAt": row["updated_at"] if row else None,
                "source": "SET" if row else "DEFAULT"}

    def get(self, ubai: str) -> Answer:
        """GET: the view (the default when none was set)."""
        check_ubai(ubai)
        with self.store.read() as db:
            return ok(200, self.view(db, ubai, self.clock.now()))

    def put(self, ubai: str, raw: bytes) -> Answer:
        """PUT: create (201) or replace (200)."""
        check_ubai(ubai)
        limit = parse_change(raw)
        now = self.clock.now()
        with self.store.write() as db:
            existed = db.execute("SELECT 1 FROM limits WHERE ubai = ?", (ubai,)).fetchone()
            db.execute("INSERT OR REPLACE INTO limits VALUES (?, ?, ?)", (ubai, limit, iso(now)))
            view = self.view(db, ubai, now)
        if existed:
            return ok(200, view)
        return ok(201, view, Location=f"/cws/v1/limits/{ubai}")

    def patch(self, ubai: str, raw: bytes) -> Answer:
        """PATCH: modify a limit that is set; 404 LIMIT_NOT_FOUND on the default."""
        check_ubai(ubai)
        limit = parse_change(raw)
        now = self.clock.now()
        with self.store.write() as db:
            changed = db.execute("UPDATE limits SET daily_limit = ?, updated_at = ? "
                                 "WHERE ubai = ?", (limit, iso(now), ubai)).rowcount
            view = self.view(db, ubai, now)
        if not changed:
            return problem(404, "LIMIT_NOT_FOUND", "No limit is set for this UBAI; PUT "
                           "creates one.")
        return ok(200, view)

    def delete(self, ubai: str) -> Answer:
        """DELETE: the default applies again; today's usage is kept."""
        check_ubai(ubai)
        now = self.clock.now()
        with self.store.write() as db:
            db.execute("DELETE FROM limits WHERE ubai = ?", (ubai,))
            view = self.view(db, ubai, now)
        return ok(200, view)
