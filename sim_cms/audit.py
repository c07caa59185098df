"""The append-only, hash-chained audit log: one record per decision the CMS takes.

Each record's hash covers the previous record's hash and its own content (sequence number,
instant, kind, subject, payload), so editing, deleting, reordering or inserting a record
anywhere breaks every hash after it. `AuditHead` holds the last sequence number and hash;
every append locks it, which keeps the chain linear when many workers append at once (on
SQLite the writer's `BEGIN IMMEDIATE` already serialises appends).

Appends happen inside the caller's unit of work: a decision and its audit record commit or
roll back together. `append_core` is the funding path's append: on PostgreSQL one statement
locks the head, hashes (`sha256()` in the server, over exactly the text `record_hash`
hashes), moves the head and inserts the record, so the head, which every decision of the
casino waits for, is held only from that statement to the commit.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    String,
    Table,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from sim_cms.models import AuditHead, AuditRecord
from sim_cms.seed import GENESIS_HASH
from simkit.clock import utc
from simkit.sqltypes import UtcDateTime

HEAD_ID = 1


def canonical_json(value: Any) -> str:
    """The one text form of a JSON value that hashes use: sorted keys, no spaces, ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _instant_text(at: datetime) -> str:
    # Microseconds survive a round trip through both SQLite and PostgreSQL, so they are hashed.
    return utc(at).isoformat(timespec="microseconds")


def _content_around_seq(*, at: datetime, kind: str, subject: str,
                        payload: Any) -> tuple[str, str]:
    """The record's canonical JSON split around its `seq` value: (text before, text after).

    The keys sort as at, kind, payload, seq, subject, so the content is
    `before + str(seq) + after`; the database can then finish the text once it knows seq.
    """
    before = (f'{{"at":{canonical_json(_instant_text(at))},"kind":{canonical_json(kind)},'
              f'"payload":{canonical_json(payload)},"seq":')
    return before, f',"subject":{canonical_json(subject)}}}'


def record_hash(prev_hash: str, *, seq: int, at: datetime, kind: str, subject: str,
                payload: Any) -> str:
    """The hash of one record: SHA-256 over the previous hash and the record's content.

    The content is the canonical JSON of `{"seq", "at", "kind", "subject", "payload"}`.
    """
    before, after = _content_around_seq(at=at, kind=kind, subject=subject, payload=payload)
    return hashlib.sha256(f"{prev_hash}{before}{seq}{after}".encode("ascii")).hexdigest()


def _lock_head(session: Session) -> AuditHead:
    """The chain's head row, locked (FOR UPDATE on PostgreSQL), created if missing."""
    head = session.scalars(
        select(AuditHead).where(AuditHead.id == HEAD_ID).with_for_update()
    ).one_or_none()
    if head is None:  # seeding creates it; a hand-emptied table must not break appends
        head = AuditHead(id=HEAD_ID, last_seq=0, last_hash=GENESIS_HASH)
        session.add(head)
        session.flush()
    return head


def append(session: Session, *, kind: str, subject: str, payload: dict[str, Any],
           now: datetime) -> AuditRecord:
    """Append one decision record to the chain in the caller's transaction and return it."""
    head = _lock_head(session)
    seq = head.last_seq + 1
    digest = record_hash(head.last_hash, seq=seq, at=now, kind=kind, subject=subject,
                         payload=payload)
    record = AuditRecord(seq=seq, at=now, kind=kind, subject=subject,
                         payload=canonical_json(payload), prev_hash=head.last_hash, hash=digest)
    session.add(record)
    head.last_seq = seq
    head.last_hash = digest
    session.flush()
    return record


_HEAD = cast(Table, AuditHead.__table__)
_LOG = cast(Table, AuditRecord.__table__)


def pg_chain_sql(after: str = "") -> str:
    """The PostgreSQL append as the tail of a WITH statement (`WITH` not included).

    `after` names a CTE of the same statement whose rows must exist before the head is
    locked (as a one-time filter it runs first), so a statement can do its other writes,
    and fail on their unique keys, before it waits for the head.
    """
    if after and not after.isidentifier():
        raise ValueError(f"not a CTE name: {after!r}")
    guard = f"AND EXISTS (SELECT 1 FROM {after})" if after else ""  # noqa: S608 - a CTE name
    return f"""
    old AS (
        SELECT last_seq, last_hash FROM audit_head WHERE id = :head {guard} FOR UPDATE
    ), new AS (
        SELECT last_seq + 1 AS seq, last_hash AS prev_hash,
               encode(sha256(convert_to(
                   last_hash || :before || (last_seq + 1)::text || :after, 'UTF8')), 'hex')
               AS hash
        FROM old
    ), moved AS (
        UPDATE audit_head SET last_seq = new.seq, last_hash = new.hash
        FROM new WHERE audit_head.id = :head
    )
    INSERT INTO audit_log (seq, at, kind, subject, payload, prev_hash, hash)
    SELECT seq, :at, :kind, :subject, :payload, prev_hash, hash FROM new
    RETURNING seq
    """  # noqa: S608 - the values are bound parameters; `guard` names a CTE


def pg_chain_params(*, kind: str, subject: str, payload: dict[str, Any],
                    now: datetime) -> dict[str, Any]:
    """The bound values `pg_chain_sql` needs (bind `at` as UtcDateTime, the rest as text)."""
    before, after = _content_around_seq(at=now, kind=kind, subject=subject, payload=payload)
    return {"head": HEAD_ID, "before": before, "after": after, "at": now, "kind": kind,
            "subject": subject, "payload": canonical_json(payload)}


PG_CHAIN_TYPES = (bindparam("before", type_=String()), bindparam("after", type_=String()),
                  bindparam("at", type_=UtcDateTime()))
_PG_APPEND = text("WITH " + pg_chain_sql()).bindparams(*PG_CHAIN_TYPES)
_READ_HEAD = select(_HEAD.c.last_seq, _HEAD.c.last_hash).where(_HEAD.c.id == HEAD_ID)
_INSERT_HEAD = insert(_HEAD)
_MOVE_HEAD = update(_HEAD).where(_HEAD.c.id == HEAD_ID)
_INSERT_RECORD = insert(_LOG)


def ensure_head(connection: Connection) -> None:
    """Create the chain's head if it is missing (seeding makes it; a hand-emptied table must
    not break appends)."""
    if connection.execute(_READ_HEAD).first() is None:
        connection.execute(_INSERT_HEAD.values(id=HEAD_ID, last_seq=0, last_hash=GENESIS_HASH))


def append_core(connection: Connection, *, kind: str, subject: str, payload: dict[str, Any],
                now: datetime) -> None:
    """`append` on a Core connection, in the caller's transaction (the funding path's way).

    The chain is the same one `append` builds and `verify_chain` checks. On SQLite the
    writer's BEGIN IMMEDIATE serialises appends, so the head is read, and then moved.
    """
    if connection.dialect.name == "postgresql":
        values = pg_chain_params(kind=kind, subject=subject, payload=payload, now=now)
        if connection.execute(_PG_APPEND, values).first() is None:
            ensure_head(connection)
            connection.execute(_PG_APPEND, values).one()
        return
    before, after = _content_around_seq(at=now, kind=kind, subject=subject, payload=payload)
    body = canonical_json(payload)
    head = connection.execute(_READ_HEAD).first()
    if head is None:
        connection.execute(_INSERT_HEAD.values(id=HEAD_ID, last_seq=0, last_hash=GENESIS_HASH))
    seq, prev_hash = (head.last_seq + 1, head.last_hash) if head else (1, GENESIS_HASH)
    digest = hashlib.sha256(f"{prev_hash}{before}{seq}{after}".encode("ascii")).hexdigest()
    connection.execute(_INSERT_RECORD, {"seq": seq, "at": now, "kind": kind, "subject": subject,
                                        "payload": body, "prev_hash": prev_hash, "hash": digest})
    connection.execute(_MOVE_HEAD, {"last_seq": seq, "last_hash": digest})


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of a chain check: `first_bad_seq` is where the chain stops being valid."""

    ok: bool
    length: int
    first_bad_seq: int | None = None


def _record_ok(record: AuditRecord, expected_seq: int, prev_hash: str) -> bool:
    """Whether `record` sits at `expected_seq`, links to `prev_hash` and hashes to its hash."""
    if record.seq != expected_seq or record.prev_hash != prev_hash:
        return False
    try:
        payload = json.loads(record.payload)
    except ValueError:
        return False
    if canonical_json(payload) != record.payload:  # even a whitespace edit counts
        return False
    digest = record_hash(prev_hash, seq=record.seq, at=record.at, kind=record.kind,
                         subject=record.subject, payload=payload)
    return digest == record.hash


def verify_chain(session: Session) -> VerifyResult:
    """Recompute the whole chain and compare it with the head; report the first bad record.

    Detects edited content or hashes, deleted, inserted or reordered records (sequence
    numbers must run 1, 2, 3... with each `prev_hash` naming the record before), and a
    truncated tail (the head must name the last record).
    """
    prev_hash, count = GENESIS_HASH, 0
    records = select(AuditRecord).order_by(AuditRecord.seq).execution_options(yield_per=1000)
    for record in session.scalars(records):  # streamed: a long-running sim has a long chain
        if not _record_ok(record, count + 1, prev_hash):
            return VerifyResult(ok=False, length=count, first_bad_seq=count + 1)
        prev_hash, count = record.hash, count + 1
    head = session.get(AuditHead, HEAD_ID)
    head_seq, head_hash = (head.last_seq, head.last_hash) if head else (0, GENESIS_HASH)
    if head_seq != count or head_hash != prev_hash:
        return VerifyResult(ok=False, length=count, first_bad_seq=min(head_seq, count) + 1)
    return VerifyResult(ok=True, length=count)


def chain_length(session: Session) -> int:
    """How many records the log holds."""
    return int(session.scalar(select(func.count()).select_from(AuditRecord)) or 0)


def records_for(session: Session, subject: str) -> list[AuditRecord]:
    """The records about one subject (a transactionId, a UBAI...), oldest first."""
    return list(session.scalars(
        select(AuditRecord).where(AuditRecord.subject == subject).order_by(AuditRecord.seq)
    ))
