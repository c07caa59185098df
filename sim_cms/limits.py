"""Daily limits per UBAI: the gaming day, the effective limit, usage rows and limit edits.

A UBAI without a `DailyLimit` row has the configured default. What a UBAI has been funded on a
gaming day is the `LimitUsage` row for that day: the ledger locks it (`lock_usage`) in the same
transaction as the funding it checks, which is what keeps racing fundings under the limit.
Edits never touch usage: a limit lowered below today's usage is allowed and leaves nothing
remaining. This module knows nothing of Flask; `limits_api` is its HTTP face.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sim_cms import audit, ledger
from sim_cms.models import DailyLimit, LimitUsage
from sim_cms.settings import CmsSettings
from simkit.clock import format_instant, utc
from simkit.db import Database
from simkit.errors import BadRequest, NotFound, SimError
from simkit.money import MinorUnits

UBAI_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_CURRENCY_SHAPE = re.compile(r"[A-Z]{3}")
_LIMIT_FIELDS = frozenset({"dailyLimit", "currency"})


def gaming_day(now: datetime, settings: CmsSettings) -> date:
    """The casino's gaming day that `now` falls in.

    A gaming day starts at `day_start_hour` local wall time, not at midnight, because a casino
    closes its books in the quiet early morning. Shifting the local wall time back by that many
    hours keeps the boundary on the wall clock across DST changes (so a gaming day lasts 23 or
    25 hours on those dates). Naive datetimes are taken to be UTC.
    """
    local = utc(now).astimezone(settings.zone)
    shifted = local.replace(tzinfo=None) - timedelta(hours=settings.day_start_hour)
    return shifted.date()


class UsageLike(Protocol):
    """What a funding reads of a usage row: a `LimitUsage` or a Core row alike."""

    @property
    def gaming_day(self) -> date: ...
    @property
    def used(self) -> MinorUnits: ...


def lock_usage(session: Session, ubai: str, day: date) -> UsageLike:
    """The usage row of `ubai` on `day`, created if missing and locked for this transaction.

    On PostgreSQL the row is taken `FOR UPDATE`; a missing row is inserted with ON CONFLICT DO
    NOTHING first, so two transactions creating it at once both end up locking the same row
    instead of one failing on the unique constraint. On SQLite the caller's `BEGIN IMMEDIATE`
    already serialises writers. A Core row is returned (one statement, no ORM identity map):
    the funding moves `used` with a relative UPDATE, never by writing this row back.
    """
    connection = session.connection()
    row = ledger.lock_usage(connection, ubai, day)
    if row is not None:
        return row
    _insert_if_missing(session, LimitUsage, ["ubai", "gaming_day"],
                       {"ubai": ubai, "gaming_day": day, "used": 0})
    row = ledger.lock_usage(connection, ubai, day)
    assert row is not None, "the usage row exists after an insert-or-nothing"
    return row


def _insert_if_missing(
    session: Session, table: type[LimitUsage] | type[DailyLimit], keys: list[str],
    values: dict[str, Any],
) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True if this call inserted the row."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (insert(table).values(**values).on_conflict_do_nothing(index_elements=keys)
                 .returning(table.ubai))
    # RETURNING rather than rowcount: an ORM-enabled INSERT does not report a reliable count.
    return session.execute(statement).first() is not None


def default_limit(settings: CmsSettings) -> MinorUnits:
    """The daily limit of a UBAI that has none set (the configured default)."""
    return MinorUnits(settings.default_daily_limit)


def effective_limit(session: Session, ubai: str, settings: CmsSettings) -> MinorUnits:
    """The daily limit that applies to `ubai`: the one set for it, else the default."""
    row = session.get(DailyLimit, ubai)
    return default_limit(settings) if row is None else row.daily_limit


def used_on(session: Session, ubai: str, day: date) -> MinorUnits:
    """How much `ubai` has been funded on gaming day `day` (without locking)."""
    used = session.scalars(
        select(LimitUsage.used).where(LimitUsage.ubai == ubai, LimitUsage.gaming_day == day)
    ).one_or_none()
    return used or MinorUnits(0)


@dataclass(frozen=True)
class LimitView:
    """A UBAI's limit as the API shows it: the limit, today's usage and what remains."""

    ubai: str
    daily_limit: MinorUnits
    currency: str
    used_today: MinorUnits
    gaming_day: date
    updated_at: datetime | None
    source: str  # DEFAULT | SET

    @property
    def remaining_today(self) -> MinorUnits:
        """What may still be funded today; never negative, even after a limit was lowered."""
        return MinorUnits(max(0, self.daily_limit - self.used_today))

    def to_json(self) -> dict[str, Any]:
        """The wire shape of the Daily Limits API."""
        return {
            "ubai": self.ubai, "dailyLimit": self.daily_limit, "currency": self.currency,
            "usedToday": self.used_today, "remainingToday": self.remaining_today,
            "gamingDay": self.gaming_day.isoformat(),
            "updatedAt": format_instant(self.updated_at) if self.updated_at else None,
            "source": self.source,
        }


@dataclass(frozen=True)
class LimitChange:
    """A validated limit edit: the new daily limit (currency already checked)."""

    daily_limit: MinorUnits


def validate_ubai(ubai: str) -> str:
    """Return `ubai` if it has the UBAI shape, else raise 400 INVALID_UBAI.

    The shape (1-128 of letters, digits and `._:-`) is what TPAS derives and what fits the
    columns; anything else is refused before it reaches the database.
    """
    if not UBAI_PATTERN.fullmatch(ubai):
        raise BadRequest(
            "ubai must be 1-128 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'",
            code="INVALID_UBAI", field="ubai",
        )
    return ubai


def parse_limit_change(body: Any, settings: CmsSettings) -> LimitChange:
    """Validate a PUT or PATCH body `{"dailyLimit": int, "currency"?: str}`.

    Shape errors are 400 INVALID_REQUEST naming the field; a well-formed value the casino
    cannot accept is 422 (LIMIT_ABOVE_CAP, CURRENCY_MISMATCH). `currency` may be left out and
    then means the casino's currency.
    """
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", field="body")
    unknown = sorted(set(body) - _LIMIT_FIELDS)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}", field=unknown[0])
    if "currency" in body:
        _check_currency(body["currency"], settings)
    return LimitChange(daily_limit=_parse_daily_limit(body.get("dailyLimit"), settings))


def _parse_daily_limit(value: Any, settings: CmsSettings) -> MinorUnits:
    if value is None:
        raise BadRequest("dailyLimit is required", field="dailyLimit")
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest("dailyLimit must be an integer number of minor units",
                         field="dailyLimit")
    if value < 0:
        raise BadRequest("dailyLimit must be zero (self-excluded) or more", field="dailyLimit")
    if value > settings.max_daily_limit:
        raise SimError("LIMIT_ABOVE_CAP", 422,
                       f"dailyLimit must be at most {settings.max_daily_limit}",
                       field="dailyLimit", cap=settings.max_daily_limit)
    return MinorUnits(value)


def _check_currency(value: Any, settings: CmsSettings) -> None:
    if not isinstance(value, str) or not _CURRENCY_SHAPE.fullmatch(value):
        raise BadRequest("currency must be a three-letter ISO 4217 code", field="currency")
    if value != settings.currency:
        raise SimError("CURRENCY_MISMATCH", 422,
                       f"limits of this casino are in {settings.currency}",
                       field="currency", expected=settings.currency)


def _view(session: Session, ubai: str, settings: CmsSettings, now: datetime) -> LimitView:
    day = gaming_day(now, settings)
    row = session.get(DailyLimit, ubai)
    used = used_on(session, ubai, day)
    if row is None:
        return LimitView(ubai, default_limit(settings), settings.currency, used, day,
                         None, "DEFAULT")
    return LimitView(ubai, row.daily_limit, row.currency, used, day, row.updated_at, "SET")


# The limit view in one read on the driver connection of `Database.hot_read` (no pooled
# checkout, no SQLAlchemy result machinery): the read every scan-then-pay flow makes.
_LIMIT_AND_USAGE = (
    "SELECT (SELECT used FROM limit_usage WHERE ubai = :ubai AND gaming_day = :day),"
    " d.daily_limit, d.currency, d.updated_at"
    " FROM (SELECT 1 AS one) AS k LEFT OUTER JOIN daily_limits AS d ON d.ubai = :ubai"
)
_UPDATED_AT = cast(Table, DailyLimit.__table__).c.updated_at.type


def get_limit(db: Database, ubai: str, settings: CmsSettings, now: datetime) -> LimitView:
    """The limit view of `ubai` now (the default when none was set): one SELECT, no
    transaction. The driver's values are converted as the columns' types would."""
    validate_ubai(ubai)
    day = gaming_day(now, settings)
    ((used, daily_limit, currency, updated_at),) = db.hot_read(
        _LIMIT_AND_USAGE, {"ubai": ubai, "day": day.isoformat() if db.is_sqlite else day})
    used_today = MinorUnits(used or 0)  # the driver's int (or NULL: nothing funded today)
    if daily_limit is None:
        return LimitView(ubai, default_limit(settings), settings.currency, used_today, day,
                         None, "DEFAULT")
    dialect = db.engine.dialect
    to_instant = _UPDATED_AT.dialect_impl(dialect).result_processor(dialect, None)
    return LimitView(ubai, MinorUnits(daily_limit), currency, used_today, day,
                     to_instant(updated_at) if to_instant else updated_at, "SET")


def set_limit(
    db: Database, ubai: str, change: LimitChange, settings: CmsSettings, now: datetime
) -> tuple[LimitView, bool]:
    """Create or replace the limit of `ubai`; returns the new view and whether it was created."""
    validate_ubai(ubai)
    with db.write() as session:
        row = _locked_limit(session, ubai)
        created = row is None and _insert_if_missing(
            session, DailyLimit, ["ubai"],
            {"ubai": ubai, "daily_limit": change.daily_limit, "currency": settings.currency,
             "created_at": now, "updated_at": now},
        )
        row = row or _locked_limit(session, ubai)
        assert row is not None, "the limit row exists after an insert-or-nothing"
        previous = None if created else row.daily_limit
        row.daily_limit, row.updated_at = change.daily_limit, now
        session.flush()
        _audit(session, "LIMIT_SET", ubai, now,
               {"dailyLimit": change.daily_limit, "previous": previous, "created": created})
        return _view(session, ubai, settings, now), created


def update_limit(
    db: Database, ubai: str, change: LimitChange, settings: CmsSettings, now: datetime
) -> LimitView:
    """Change the limit already set for `ubai`; 404 LIMIT_NOT_FOUND if none was set.

    PATCH only modifies: a UBAI on the default gets its first limit through PUT, so a PATCH
    aimed at a limit that was deleted meanwhile cannot silently recreate it.
    """
    validate_ubai(ubai)
    with db.write() as session:
        row = _locked_limit(session, ubai)
        if row is None:
            raise NotFound(f"no daily limit is set for {ubai}", code="LIMIT_NOT_FOUND")
        previous = row.daily_limit
        row.daily_limit, row.updated_at = change.daily_limit, now
        session.flush()
        _audit(session, "LIMIT_UPDATED", ubai, now,
               {"dailyLimit": change.daily_limit, "previous": previous})
        return _view(session, ubai, settings, now)


def delete_limit(db: Database, ubai: str, settings: CmsSettings, now: datetime) -> LimitView:
    """Remove the limit set for `ubai` (back to the default); idempotent, returns the view.

    Deleting when nothing is set changes nothing and writes no audit record, so a retried
    DELETE is harmless.
    """
    validate_ubai(ubai)
    with db.write() as session:
        row = _locked_limit(session, ubai)
        if row is not None:
            previous = row.daily_limit
            session.execute(delete(DailyLimit).where(DailyLimit.ubai == ubai))
            _audit(session, "LIMIT_DELETED", ubai, now, {"previous": previous})
        return _view(session, ubai, settings, now)


def _locked_limit(session: Session, ubai: str) -> DailyLimit | None:
    query = (select(DailyLimit).where(DailyLimit.ubai == ubai).with_for_update()
             .execution_options(populate_existing=True))
    return session.scalars(query).one_or_none()


def _audit(session: Session, kind: str, ubai: str, now: datetime, payload: dict[str, Any]) -> None:
    """Record a limit decision in the hash-chained audit log, in the edit's transaction."""
    audit.append(session, chain=audit.CASINO_CHAIN, kind=kind, subject=ubai, payload=payload,
                 now=now)
