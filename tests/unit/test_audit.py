"""The hash-chained audit log: each chain's appends link up, and any tampering is found by
`verify_chain`, in the chain where it happened."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import ColumnElement, delete, select, update

from sim_cms import audit
from sim_cms.models import AuditHead, AuditRecord, Base
from sim_cms.seed import GENESIS_HASH
from simkit.db import Database
from tests.conftest import DatabaseFactory

pytestmark = pytest.mark.db

T0 = datetime(2026, 11, 25, 21, 0, 0, 123_456, tzinfo=UTC)
EGM = audit.egm_chain("EGM-001")


@pytest.fixture
def db(databases: DatabaseFactory) -> Iterator[Database]:
    """A database with sim_cms's tables and five records in EGM-001's chain, each appended
    after one record of the casino's chain (so the log interleaves the two)."""
    database = Database(databases.new("audit"))
    Base.metadata.create_all(database.engine)
    with database.write() as session:
        for n in range(1, 6):
            audit.append(session, chain=audit.CASINO_CHAIN, kind="LIMIT_SET",
                         subject=f"ubai-{n}", payload={"dailyLimit": n},
                         now=T0 + timedelta(seconds=n))
            audit.append(session, chain=EGM, kind="FUNDING_APPLIED", subject=f"tx-{n}",
                         payload={"amount": n * 100, "egmId": "EGM-001"},
                         now=T0 + timedelta(seconds=n))
    yield database
    database.dispose()


def verify(db: Database) -> audit.VerifyResult:
    with db.read() as session:
        return audit.verify_chain(session)


def egm_record(n: int) -> ColumnElement[bool]:
    """The WHERE clause of record `n` of EGM-001's chain."""
    return (AuditRecord.chain == EGM) & (AuditRecord.chain_seq == n)


def broken_at(n: int, verified_in_chain: int) -> audit.VerifyResult:
    """The result for EGM-001's chain broken at its record `n` (the casino's chain, which sorts
    first, holds five good records)."""
    return audit.VerifyResult(ok=False, length=5 + verified_in_chain, first_bad_seq=n, chain=EGM)


def test_appended_records_form_one_chain_per_name_from_its_genesis(db: Database) -> None:
    with db.read() as session:
        records = list(session.scalars(select(AuditRecord).order_by(AuditRecord.seq)))
        heads = {h.chain: h for h in session.scalars(select(AuditHead))}
    assert [r.seq for r in records] == list(range(1, 11))
    for chain in (audit.CASINO_CHAIN, EGM):
        mine = [r for r in records if r.chain == chain]
        assert [r.chain_seq for r in mine] == [1, 2, 3, 4, 5]
        assert mine[0].prev_hash == audit.chain_genesis(chain)
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(mine))
        assert (heads[chain].last_seq, heads[chain].last_hash) == (5, mine[-1].hash)
    assert audit.chain_genesis(audit.CASINO_CHAIN) == GENESIS_HASH
    assert audit.chain_genesis(EGM) != GENESIS_HASH
    assert verify(db) == audit.VerifyResult(ok=True, length=10)


def test_chain_length_counts_records(db: Database) -> None:
    with db.read() as session:
        assert audit.chain_length(session) == 10


def test_payload_is_stored_as_canonical_json(db: Database) -> None:
    with db.read() as session:
        record = session.scalars(select(AuditRecord).where(egm_record(1))).one()
    assert record.payload == '{"amount":100,"egmId":"EGM-001"}'


def test_an_empty_log_verifies(databases: DatabaseFactory) -> None:
    database = Database(databases.new("empty"))
    Base.metadata.create_all(database.engine)
    assert verify(database) == audit.VerifyResult(ok=True, length=0)
    database.dispose()


def test_append_creates_a_missing_head(databases: DatabaseFactory) -> None:
    database = Database(databases.new("nohead"))
    Base.metadata.create_all(database.engine)
    with database.write() as session:
        audit.append(session, chain=EGM, kind="K", subject="s", payload={}, now=T0)
    with database.read() as session:
        head = session.get(AuditHead, EGM)
    assert head is not None and head.last_seq == 1
    assert verify(database) == audit.VerifyResult(ok=True, length=1)
    database.dispose()


TAMPERING = {
    "payload": {"payload": '{"amount":999,"egmId":"EGM-001"}'},
    "payload-whitespace": {"payload": '{"amount": 300, "egmId": "EGM-001"}'},
    "payload-not-json": {"payload": "{"},
    "kind": {"kind": "FUNDING_REJECTED"},
    "subject": {"subject": "tx-other"},
    "instant": {"at": T0 + timedelta(seconds=3, microseconds=1)},
    "hash": {"hash": "f" * 64},
    "prev-hash": {"prev_hash": "0" * 64},
}


@pytest.mark.parametrize("change", TAMPERING.values(), ids=TAMPERING.keys())
def test_editing_any_column_of_a_record_is_detected_at_that_record(
    db: Database, change: dict[str, object],
) -> None:
    with db.write() as session:
        session.execute(update(AuditRecord).where(egm_record(3)).values(**change))
    assert verify(db) == broken_at(3, verified_in_chain=2)


def test_a_rehashed_edit_still_breaks_the_next_link(db: Database) -> None:
    """Recomputing the edited record's own hash is not enough: record 4 names the old one."""
    with db.write() as session:
        record = session.scalars(select(AuditRecord).where(egm_record(3))).one()
        record.payload = '{"amount":999,"egmId":"EGM-001"}'
        record.hash = audit.record_hash(record.prev_hash, seq=3, at=record.at, kind=record.kind,
                                        subject=record.subject,
                                        payload={"amount": 999, "egmId": "EGM-001"})
    assert verify(db) == broken_at(4, verified_in_chain=3)


def test_swapping_two_records_is_detected(db: Database) -> None:
    with db.write() as session:
        session.execute(update(AuditRecord).where(egm_record(2)).values(chain_seq=-2))
        session.execute(update(AuditRecord).where(egm_record(3)).values(chain_seq=2))
        session.execute(update(AuditRecord).where(egm_record(-2)).values(chain_seq=3))
    assert verify(db) == broken_at(2, verified_in_chain=1)


def test_deleting_a_middle_record_is_detected(db: Database) -> None:
    with db.write() as session:
        session.execute(delete(AuditRecord).where(egm_record(2)))
    assert verify(db) == broken_at(2, verified_in_chain=1)


def test_truncating_the_tail_is_detected_by_the_head(db: Database) -> None:
    with db.write() as session:
        session.execute(delete(AuditRecord).where(
            (AuditRecord.chain == EGM) & (AuditRecord.chain_seq >= 4)))
    assert verify(db) == broken_at(4, verified_in_chain=3)


def test_a_record_appended_behind_the_heads_back_is_detected(db: Database) -> None:
    with db.write() as session:
        last = session.scalars(select(AuditRecord).where(egm_record(5))).one()
        forged_hash = audit.record_hash(last.hash, seq=6, at=T0, kind="K", subject="s",
                                        payload={})
        session.add(AuditRecord(chain=EGM, chain_seq=6, at=T0, kind="K", subject="s",
                                payload="{}", prev_hash=last.hash, hash=forged_hash))
    assert verify(db) == broken_at(6, verified_in_chain=6)


def test_a_record_moved_to_another_chain_is_detected(db: Database) -> None:
    """Each chain starts from its own genesis: the casino's first record, moved whole into a
    new chain of its own, does not link to that chain's genesis."""
    with db.write() as session:
        session.execute(update(AuditRecord).where(
            (AuditRecord.chain == audit.CASINO_CHAIN) & (AuditRecord.chain_seq == 5))
            .values(chain="egm:EGM-999", chain_seq=1))
        session.execute(update(AuditHead).where(AuditHead.chain == audit.CASINO_CHAIN)
                        .values(last_seq=4, last_hash=session.scalars(
                            select(AuditRecord.hash).where(
                                (AuditRecord.chain == audit.CASINO_CHAIN)
                                & (AuditRecord.chain_seq == 4))).one()))
        session.add(AuditHead(chain="egm:EGM-999", last_seq=1, last_hash="0" * 64))
    result = verify(db)
    assert (result.ok, result.chain, result.first_bad_seq) == (False, "egm:EGM-999", 1)


def test_a_removed_head_is_detected(db: Database) -> None:
    with db.write() as session:
        session.execute(delete(AuditHead).where(AuditHead.chain == EGM))
    assert verify(db) == broken_at(1, verified_in_chain=0)


def test_a_head_whose_records_were_all_removed_is_detected(db: Database) -> None:
    with db.write() as session:
        session.execute(delete(AuditRecord).where(AuditRecord.chain == EGM))
    assert verify(db) == audit.VerifyResult(ok=False, length=5, first_bad_seq=1, chain=EGM)


def test_records_for_returns_one_subjects_records_in_order(db: Database) -> None:
    with db.write() as session:
        audit.append(session, chain=audit.CASINO_CHAIN, kind="AGAIN", subject="tx-2",
                     payload={}, now=T0)
    with db.read() as session:
        assert [r.kind for r in audit.records_for(session, "tx-2")] == \
            ["FUNDING_APPLIED", "AGAIN"]
