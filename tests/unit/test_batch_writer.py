"""The batch writer: rows stored in order shortly after, visible after flush, memory bounded."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, func, select

from simkit import batch_writer
from simkit.db import Database, sqlite_url
from simkit.models import FaultRuleRow, KernelBase
from simkit.wait import poll_until

FAULTS: Table = FaultRuleRow.__table__  # type: ignore[assignment]


def _row(n: int) -> dict[str, Any]:
    return {"method": "*", "path": f"/p/{n}", "action": "drop", "status": None, "delay_ms": 0,
            "probability": 1.0, "remaining": 0, "fired": 0,
            "created_at": datetime(2026, 1, 1, tzinfo=UTC)}


def _database(tmp_path: Path) -> Database:
    db = Database(sqlite_url(str(tmp_path / "writer.db")))
    KernelBase.metadata.create_all(db.engine)
    return db


def _count(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(FaultRuleRow)) or 0)


def test_every_queued_row_is_stored_by_the_time_flush_returns(tmp_path: Path) -> None:
    db = _database(tmp_path)
    writer = batch_writer.writer_for(db)
    for n in range(1200):  # more than one batch
        writer.submit(FAULTS, partial(_row, n))
    assert writer.flush()
    assert _count(db) == 1200
    with db.read() as session:  # every row once, whole: the rows go in multi-row INSERTs
        stored = session.execute(select(FaultRuleRow.path, FaultRuleRow.action)).all()
    assert sorted(path for path, _ in stored) == sorted(f"/p/{n}" for n in range(1200))
    assert {action for _, action in stored} == {"drop"}
    db.dispose()


def test_flush_if_pending_says_whether_a_row_was_still_to_store(tmp_path: Path) -> None:
    db = _database(tmp_path)
    writer = batch_writer.writer_for(db)
    assert writer.flush_if_pending() is False  # nothing queued: a reader's miss is final
    blocker = db.engine.raw_connection()
    blocker.cursor().execute("BEGIN IMMEDIATE")  # the row cannot land on its own yet
    writer.submit(FAULTS, partial(_row, 0))
    assert _count(db) == 0
    releasing = threading.Timer(0.2, blocker.rollback)
    releasing.start()
    assert writer.flush_if_pending() is True  # waited for the row ...
    assert _count(db) == 1  # ... which a second look now finds
    assert writer.flush_if_pending() is False
    releasing.join()
    blocker.close()
    db.dispose()


def test_a_stalled_database_makes_requests_wait_once_the_budget_is_spent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batch_writer, "MAX_PENDING_BYTES", 10_000)
    db = _database(tmp_path)
    writer = batch_writer.writer_for(db)
    blocker = db.engine.raw_connection()
    blocker.cursor().execute("BEGIN IMMEDIATE")  # the writer's commit now waits
    try:
        writer.submit(FAULTS, partial(_row, 0))
        # The writer takes that row and stalls on the lock; what follows has to wait.
        assert poll_until(lambda: writer._pending_bytes == 0 or None, timeout_s=5)
        for n in range(1, 18):  # 10,200 estimated bytes waiting: over the budget
            writer.submit(FAULTS, partial(_row, n), size=600)
        late = threading.Thread(target=writer.submit, args=(FAULTS, partial(_row, 99)))
        late.start()
        late.join(timeout=0.5)
        assert late.is_alive(), "a submit over the budget must wait for the writer"
    finally:
        blocker.rollback()
        blocker.close()
    late.join(timeout=30)
    assert not late.is_alive()
    assert writer.flush()
    assert _count(db) == 19
    db.dispose()
