"""TEST-ONLY: sim_cms with its funding locks removed, to show the concurrency tests have teeth.

`create()` builds the very same app as `sim_cms.wsgi:create()` except for four things:

- `Database.write()` opens a plain (deferred) `BEGIN` instead of SQLite's `BEGIN IMMEDIATE`,
  so two fundings can both read before either writes;
- `egms.lock_egm` reads the EGM row without `FOR UPDATE`;
- `limits.lock_usage` reads (creating if missing, as before) the usage row without `FOR UPDATE`;
- `decide.apply_on_hot_path` (PostgreSQL's two-round-trip credit, which takes both locks in
  its own SQL) declines every funding, so all of them take the general path above.

The names are replaced on the modules where `decide.post_transaction` looks them up, in the
gunicorn master (`--preload`), so every forked worker inherits them. The unique keys and the
audit head's row lock are left as they are: the tests show that they alone do not keep a
UBAI under its limit. Never import this outside tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from sim_cms import egms, limits
from sim_cms.app import create_app
from sim_cms.funding import decide
from sim_cms.funding.requests import FundingOutcome, FundingRequest
from sim_cms.models import Egm, LimitUsage
from sim_cms.settings import CmsSettings, load_cms_settings
from simkit.db import Database


class UnlockedDatabase(Database):
    """A `Database` whose write sessions begin DEFERRED: reads take no write lock."""

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A committing session on a plain BEGIN (the engine's default on SQLite)."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session


def read_egm(session: Session, egm_id: str) -> Egm | None:
    """`egms.lock_egm` without the lock: a plain read of the EGM row."""
    return session.get(Egm, egm_id, populate_existing=True)


def read_usage(session: Session, ubai: str, day: date) -> LimitUsage:
    """`limits.lock_usage` without the lock: insert-if-missing as before, then a plain read."""
    query = (select(LimitUsage).where(LimitUsage.ubai == ubai, LimitUsage.gaming_day == day)
             .execution_options(populate_existing=True))
    row = session.scalars(query).one_or_none()
    if row is None:
        limits._insert_if_missing(  # the product's own upsert, minus the lock
            session, LimitUsage, ["ubai", "gaming_day"], {"ubai": ubai, "gaming_day": day,
                                                          "used": 0})
        row = session.scalars(query).one()
    return row


def no_hot_path(db: Database, request: FundingRequest, settings: CmsSettings,
                now: datetime) -> FundingOutcome | None:
    """`decide.apply_on_hot_path` declining: the general path decides every funding."""
    return None


def create() -> Flask:
    """sim_cms from the environment, with the funding locks replaced by plain reads."""
    settings = load_cms_settings()
    egms.lock_egm = read_egm
    limits.lock_usage = read_usage
    decide.apply_on_hot_path = no_hot_path
    return create_app(settings, database=UnlockedDatabase(settings.database_url))
