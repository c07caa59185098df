"""Migration 0006 turns the one audit chain into the casino's chain without rehashing it.

A log written before chains existed (explicit `seq` numbers, one head with id 1) must still
verify after the upgrade, and the next appends, to the casino's chain and to a new EGM
chain, must get fresh `seq` numbers (on PostgreSQL the sequence has to be moved past the
numbers the old code wrote by hand).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

import sim_cms
from sim_cms import audit
from sim_cms.seed import GENESIS_HASH
from simkit.db import Database
from simkit.migrate import alembic_config, upgrade_to_head
from tests.conftest import DatabaseFactory

pytestmark = pytest.mark.db

MIGRATIONS = Path(sim_cms.__file__).parent / "migrations"
T0 = datetime(2026, 11, 25, 21, 0, 0, tzinfo=UTC)


@pytest.fixture
def old_log(databases: DatabaseFactory) -> Iterator[Database]:
    """A database at revision 0005 holding three chained records and the single head."""
    database = Database(databases.new("chain-migration"))
    command.upgrade(alembic_config(MIGRATIONS, database), "0005")
    prev = GENESIS_HASH
    with database.engine.begin() as connection:
        for seq in (1, 2, 3):
            digest = audit.record_hash(prev, seq=seq, at=T0, kind="LIMIT_SET", subject="u",
                                       payload={"n": seq})
            connection.execute(text(
                "INSERT INTO audit_log (seq, at, kind, subject, payload, prev_hash, hash) "
                "VALUES (:seq, :at, 'LIMIT_SET', 'u', :payload, :prev, :hash)"),
                {"seq": seq, "at": T0.isoformat() if database.is_sqlite else T0,
                 "payload": audit.canonical_json({"n": seq}), "prev": prev, "hash": digest})
            prev = digest
        connection.execute(text(
            "INSERT INTO audit_head (id, last_seq, last_hash) VALUES (1, 3, :hash)"),
            {"hash": prev})
    yield database
    database.dispose()


def test_an_old_log_verifies_as_the_casinos_chain_and_keeps_growing(old_log: Database) -> None:
    upgrade_to_head(MIGRATIONS, old_log)
    with old_log.read() as session:
        assert audit.verify_chain(session) == audit.VerifyResult(ok=True, length=3)
    with old_log.write() as session:
        audit.append(session, chain=audit.CASINO_CHAIN, kind="LIMIT_SET", subject="u",
                     payload={"n": 4}, now=T0)
        audit.append(session, chain=audit.egm_chain("EGM-001"), kind="EGM_DEFINED",
                     subject="EGM-001", payload={}, now=T0)
    with old_log.read() as session:
        assert audit.verify_chain(session) == audit.VerifyResult(ok=True, length=5)
        rows = session.execute(text(
            "SELECT seq, chain, chain_seq FROM audit_log ORDER BY seq")).all()
    assert [tuple(row) for row in rows] == [
        (1, "casino", 1), (2, "casino", 2), (3, "casino", 3), (4, "casino", 4),
        (5, "egm:EGM-001", 1)]


def test_an_old_log_edited_before_the_upgrade_still_fails(old_log: Database) -> None:
    with old_log.engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET payload = :edited WHERE seq = 2"),
                           {"edited": audit.canonical_json({"n": 9})})
    upgrade_to_head(MIGRATIONS, old_log)
    with old_log.read() as session:
        assert audit.verify_chain(session) == audit.VerifyResult(
            ok=False, length=1, first_bad_seq=2, chain="casino")
