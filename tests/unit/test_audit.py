"""The hash-chained audit log: appends link up, and any tampering is found by `verify_chain`."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, update

from sim_cms import audit
from sim_cms.models import AuditHead, AuditRecord, Base
from sim_cms.seed import GENESIS_HASH
from simkit.db import Database
from tests.conftest import DatabaseFactory

pytestmark = pytest.mark.db

T0 = datetime(2026, 11, 25, 21, 0, 0, 123_456, tzinfo=UTC)


@pytest.fixture
def db(databases: DatabaseFactory) -> Iterator[Database]:
    """A database with sim_cms's tables, the chain's head, and five records."""
    database = Database(databases.new("audit"))
    Base.metadata.create_all(database.engine)
    with database.write() as session:
        session.add(AuditHead(id=1, last_seq=0, last_hash=GENESIS_HASH))
    with database.write() as session:
        for n in range(1, 6):
            audit.append(session, kind="FUNDING_APPLIED", subject=f"tx-{n}",
                         payload={"amount": n * 100, "egmId": "EGM-001"},
                         now=T0 + timedelta(seconds=n))
    yield database
    database.dispose()


def verify(db: Database) -> audit.VerifyResult:
    with db.read() as session:
        return audit.verify_chain(session)


def test_appended_records_form_a_chain_from_genesis(db: Database) -> None:
    with db.read() as session:
        records = list(session.query(AuditRecord).order_by(AuditRecord.seq))
        head = session.get(AuditHead, 1)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert head is not None and (head.last_seq, head.last_hash) == (5, records[-1].hash)
    assert verify(db) == audit.VerifyResult(ok=True, length=5)


def test_chain_length_counts_records(db: Database) -> None:
    with db.read() as session:
        assert audit.chain_length(session) == 5


def test_payload_is_stored_as_canonical_json(db: Database) -> None:
    with db.read() as session:
        record = session.get(AuditRecord, 1)
    assert record is not None and record.payload == '{"amount":100,"egmId":"EGM-001"}'


def test_an_empty_log_verifies(databases: DatabaseFactory) -> None:
    database = Database(databases.new("empty"))
    Base.metadata.create_all(database.engine)
    assert verify(database) == audit.VerifyResult(ok=True, length=0)
    database.dispose()


def test_append_creates_a_missing_head(databases: DatabaseFactory) -> None:
    database = Database(databases.new("nohead"))
    Base.metadata.create_all(database.engine)
    with database.write() as session:
        audit.append(session, kind="K", subject="s", payload={}, now=T0)
    assert verify(database).ok
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
        session.execute(update(AuditRecord).where(AuditRecord.seq == 3).values(**change))
    assert verify(db) == audit.VerifyResult(ok=False, length=2, first_bad_seq=3)


def test_a_rehashed_edit_still_breaks_the_next_link(db: Database) -> None:
    """Recomputing the edited record's own hash is not enough: record 4 names the old one."""
    with db.write() as session:
        record = session.get(AuditRecord, 3)
        assert record is not None
        record.payload = '{"amount":999,"egmId":"EGM-001"}'
        record.hash = audit.record_hash(record.prev_hash, seq=3, at=record.at, kind=record.kind,
                                        subject=record.subject,
                                        payload={"amount": 999, "egmId": "EGM-001"})
    assert verify(db) == audit.VerifyResult(ok=False, length=3, first_bad_seq=4)


def test_swapping_two_records_is_detected(db: Database) -> None:
    with db.write() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 2).values(seq=-2))
        session.execute(update(AuditRecord).where(AuditRecord.seq == 3).values(seq=2))
        session.execute(update(AuditRecord).where(AuditRecord.seq == -2).values(seq=3))
    assert verify(db) == audit.VerifyResult(ok=False, length=1, first_bad_seq=2)


def test_deleting_a_middle_record_is_detected(db: Database) -> None:
    with db.write() as session:
        session.execute(delete(AuditRecord).where(AuditRecord.seq == 2))
    assert verify(db) == audit.VerifyResult(ok=False, length=1, first_bad_seq=2)


def test_truncating_the_tail_is_detected_by_the_head(db: Database) -> None:
    with db.write() as session:
        session.execute(delete(AuditRecord).where(AuditRecord.seq >= 4))
    assert verify(db) == audit.VerifyResult(ok=False, length=3, first_bad_seq=4)


def test_a_record_appended_behind_the_heads_back_is_detected(db: Database) -> None:
    with db.write() as session:
        last = session.get(AuditRecord, 5)
        assert last is not None
        forged_hash = audit.record_hash(last.hash, seq=6, at=T0, kind="K", subject="s",
                                        payload={})
        session.add(AuditRecord(seq=6, at=T0, kind="K", subject="s", payload="{}",
                                prev_hash=last.hash, hash=forged_hash))
    assert verify(db) == audit.VerifyResult(ok=False, length=6, first_bad_seq=6)


def test_records_for_returns_one_subjects_records_in_order(db: Database) -> None:
    with db.write() as session:
        audit.append(session, kind="AGAIN", subject="tx-2", payload={}, now=T0)
    with db.read() as session:
        assert [r.kind for r in audit.records_for(session, "tx-2")] == \
            ["FUNDING_APPLIED", "AGAIN"]
