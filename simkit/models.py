"""Tables every sim carries for the kernel: the shared manual clock, the journal and faults.

They live in each sim's own database (each sim's first migration creates them), so every
worker process of a sim sees the same clock, journal and fault plan.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from simkit.sqltypes import UtcDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class KernelBase(DeclarativeBase):
    """Declarative base of the kernel's tables."""

    metadata = MetaData(naming_convention=NAMING)


class ClockRow(KernelBase):
    """The one row holding a controllable clock's state (id is always 1)."""

    __tablename__ = "sim_clock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    frozen_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    offset_us: Mapped[int] = mapped_column(BigInteger, default=0)


class JournalEntry(KernelBase):
    """One request and its response as a sim saw them, secrets already redacted."""

    __tablename__ = "sim_journal"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    correlation_id: Mapped[str] = mapped_column(String(128), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(512))  # read by prefix: no index helps
    query: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    request_headers: Mapped[str] = mapped_column(Text, default="{}")
    request_body: Mapped[str] = mapped_column(Text, default="")
    response_headers: Mapped[str] = mapped_column(Text, default="{}")
    response_body: Mapped[str] = mapped_column(Text, default="")
    fault: Mapped[str | None] = mapped_column(String(64))


class FaultRuleRow(KernelBase):
    """A declared fault: which requests it matches, what it does, and how often it may."""

    __tablename__ = "sim_faults"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    method: Mapped[str] = mapped_column(String(16), default="*")
    path: Mapped[str] = mapped_column(String(512))
    action: Mapped[str] = mapped_column(String(32))
    status: Mapped[int | None] = mapped_column(Integer)
    delay_ms: Mapped[int] = mapped_column(Integer, default=0)
    probability: Mapped[float] = mapped_column(default=1.0)
    remaining: Mapped[int | None] = mapped_column(Integer)
    fired: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
