"""The append-only, hash-chained audit log: one record per decision the CMS takes.

The log is made of chains: each EGM's decisions (its fundings, accepted or refused, and its
definition and state changes) form one chain, `egm:<id>`, and every other decision (limits,
fundings for an EGM that does not exist) the casino's chain, `casino`. Each record's hash
covers the previous record's hash in its chain and its own content (its number in the chain,
instant, kind, subject, payload), so editing, deleting, reordering or inserting a record
anywhere breaks every hash after it in its chain. Each chain starts from its own genesis
hash, derived from the chain's name, so a record moved to another chain breaks both.

`AuditHead` holds each chain's last number and hash; every append locks its chain's head,
which keeps the chain linear when many workers append at once (on SQLite the writer's
`BEGIN IMMEDIATE` already serialises appends). One chain per EGM is what lets fundings on
different EGMs commit side by side: a funding already holds its EGM's row lock, so waiting
for that EGM's head costs nothing more, where one head for the whole casino made every
decision wait for the commit (the WAL flush) of the one before it.

Appends happen inside the caller's unit of work: a decision and its audit record commit or
roll back together. `append_core` is the funding path's append: on PostgreSQL one statement
locks the head, hashes (`sha256()` in the server, over exactly the text `record_hash`
hashes), moves the head and inserts the record, so the head is held only from that statement
to the commit. A chain's head is made by its first append.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
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
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from sim_cms.models import AuditHead, AuditRecord
from sim_cms.seed import GENESIS_HASH
from simkit.clock import utc
from simkit.sqltypes import UtcDateTime

CASINO_CHAIN = "casino"


def egm_chain(egm_id: str) -> str:
    """The chain of one EGM's decisions."""
    return f"egm:{egm_id}"


def chain_genesis(chain: str) -> str:
    """The hash a chain's first record links to: the log's genesis for the casino's chain
    (so a log written before there were chains still verifies), a hash of the chain's name
    for every other."""
    if chain == CASINO_CHAIN:
        return GENESIS_HASH
    return hashlib.sha256(f"{GENESIS_HASH}{canonical_json(chain)}".encode("ascii")).hexdigest()


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

    The content is the canonical JSON of `{"seq", "at", "kind", "subject", "payload"}`, where
    `seq` is the record's number in its chain.
    """
    before, after = _content_around_seq(at=at, kind=kind, subject=subject, payload=payload)
    return hashlib.sha256(f"{prev_hash}{before}{seq}{after}".encode("ascii")).hexdigest()


def append(session: Session, *, chain: str, kind: str, subject: str, payload: dict[str, Any],
           now: datetime) -> None:
    """Append one decision record to `chain` in the caller's (ORM) transaction.

    Pending ORM changes are flushed first, so they take their locks before the head's, in
    the order every writer takes them (the decision's own rows, then the head).
    """
    session.flush()
    append_core(session.connection(), chain=chain, kind=kind, subject=subject,
                payload=payload, now=now)


_HEAD = cast(Table, AuditHead.__table__)
_LOG = cast(Table, AuditRecord.__table__)


def pg_chain_sql(after: str = "") -> str:
    """The PostgreSQL append as the tail of a WITH statement (`WITH` not included).

    `after` names a CTE of the same statement whose rows must exist before the head is
    locked (as a one-time filter it runs first), so a statement can do its other writes,
    and fail on their unique keys, before it waits for the head. No row comes back when
    the chain has no head yet.
    """
    if after and not after.isidentifier():
        raise ValueError(f"not a CTE name: {after!r}")
    guard = f"AND EXISTS (SELECT 1 FROM {after})" if after else ""  # noqa: S608 - a CTE name
    return f"""
    old AS (
        SELECT last_seq, last_hash FROM audit_head WHERE chain = :chain {guard} FOR UPDATE
    ), new AS (
        SELECT last_seq + 1 AS chain_seq, last_hash AS prev_hash,
               encode(sha256(convert_to(
                   last_hash || :before || (last_seq + 1)::text || :after, 'UTF8')), 'hex')
               AS hash
        FROM old
    ), moved AS (
        UPDATE audit_head SET last_seq = new.chain_seq, last_hash = new.hash
        FROM new WHERE audit_head.chain = :chain
    )
    INSERT INTO audit_log (chain, chain_seq, at, kind, subject, payload, prev_hash, hash)
    SELECT :chain, chain_seq, :at, :kind, :subject, :payload, prev_hash, hash FROM new
    RETURNING seq
    """  # noqa: S608 - the values are bound parameters; `guard` names a CTE


def pg_chain_params(*, chain: str, kind: str, subject: str, payload: dict[str, Any],
                    now: datetime) -> dict[str, Any]:
    """The bound values `pg_chain_sql` needs (bind `at` as UtcDateTime, the rest as text)."""
    before, after = _content_around_seq(at=now, kind=kind, subject=subject, payload=payload)
    return {"chain": chain, "before": before, "after": after, "at": now, "kind": kind,
            "subject": subject, "payload": canonical_json(payload)}


PG_CHAIN_TYPES = (bindparam("before", type_=String()), bindparam("after", type_=String()),
                  bindparam("at", type_=UtcDateTime()))
_PG_APPEND = text("WITH " + pg_chain_sql()).bindparams(*PG_CHAIN_TYPES)
_READ_HEAD = select(_HEAD.c.last_seq, _HEAD.c.last_hash).where(
    _HEAD.c.chain == bindparam("chain"))
_MOVE_HEAD = update(_HEAD).where(_HEAD.c.chain == bindparam("head_chain"))
_INSERT_RECORD = insert(_LOG)


def ensure_head(connection: Connection, chain: str) -> None:
    """Create `chain`'s head at its genesis unless it exists (its first append does this;
    two first appends racing both get past here, and the head's lock then orders them)."""
    make = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    connection.execute(make(_HEAD).values(chain=chain, last_seq=0,
                                          last_hash=chain_genesis(chain))
                       .on_conflict_do_nothing(index_elements=[_HEAD.c.chain]))


def append_core(connection: Connection, *, chain: str, kind: str, subject: str,
                payload: dict[str, Any], now: datetime) -> None:
    """Append one record to `chain` on a Core connection, in the caller's transaction.

    On SQLite the writer's BEGIN IMMEDIATE serialises appends, so the head is read, and then
    moved.
    """
    if connection.dialect.name == "postgresql":
        values = pg_chain_params(chain=chain, kind=kind, subject=subject, payload=payload,
                                 now=now)
        if connection.execute(_PG_APPEND, values).first() is None:
            ensure_head(connection, chain)
            connection.execute(_PG_APPEND, values).one()
        return
    before, after = _content_around_seq(at=now, kind=kind, subject=subject, payload=payload)
    head = connection.execute(_READ_HEAD, {"chain": chain}).first()
    if head is None:
        ensure_head(connection, chain)
    seq, prev_hash = (head.last_seq + 1, head.last_hash) if head else (1, chain_genesis(chain))
    digest = hashlib.sha256(f"{prev_hash}{before}{seq}{after}".encode("ascii")).hexdigest()
    connection.execute(_INSERT_RECORD, {
        "chain": chain, "chain_seq": seq, "at": now, "kind": kind, "subject": subject,
        "payload": canonical_json(payload), "prev_hash": prev_hash, "hash": digest})
    connection.execute(_MOVE_HEAD, {"head_chain": chain, "last_seq": seq,
                                    "last_hash": digest})


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of a check of every chain: `chain` and `first_bad_seq` say where the first
    broken chain stops being valid (`first_bad_seq` counts within that chain)."""

    ok: bool
    length: int
    first_bad_seq: int | None = None
    chain: str | None = None


def _record_ok(record: AuditRecord, expected_seq: int, prev_hash: str) -> bool:
    """Whether `record` sits at `expected_seq`, links to `prev_hash` and hashes to its hash."""
    if record.chain_seq != expected_seq or record.prev_hash != prev_hash:
        return False
    try:
        payload = json.loads(record.payload)
    except ValueError:
        return False
    if canonical_json(payload) != record.payload:  # even a whitespace edit counts
        return False
    digest = record_hash(prev_hash, seq=record.chain_seq, at=record.at, kind=record.kind,
                         subject=record.subject, payload=payload)
    return digest == record.hash


def _first_bad_in_chain(chain: str, records: Iterator[AuditRecord],
                        head: tuple[int, str] | None) -> tuple[int, int | None]:
    """(good records read, the first bad number or None) for one chain against its head."""
    if head is None:  # records whose chain has no head: the head was removed
        return 0, 1
    prev_hash, count = chain_genesis(chain), 0
    for record in records:
        if not _record_ok(record, count + 1, prev_hash):
            return count, count + 1
        prev_hash, count = record.hash, count + 1
    head_seq, head_hash = head
    if head_seq != count or head_hash != prev_hash:
        return count, min(head_seq, count) + 1
    return count, None


def verify_chain(session: Session) -> VerifyResult:
    """Recompute every chain and compare each with its head; report the first bad record.

    Detects edited content or hashes, deleted, inserted, reordered or moved records (a
    chain's numbers must run 1, 2, 3... with each `prev_hash` naming the record before, the
    first naming the chain's genesis), a truncated tail (the head must name the last
    record), and a removed head.
    """
    heads = {row.chain: (row.last_seq, row.last_hash) for row in session.execute(
        select(_HEAD.c.chain, _HEAD.c.last_seq, _HEAD.c.last_hash))}
    records = (select(AuditRecord).order_by(AuditRecord.chain, AuditRecord.chain_seq)
               .execution_options(yield_per=1000))
    length = 0
    # Streamed: a long-running sim has long chains.
    for chain, in_chain in groupby(session.scalars(records), key=lambda r: r.chain):
        count, bad = _first_bad_in_chain(chain, in_chain, heads.pop(chain, None))
        if bad is not None:
            return VerifyResult(ok=False, length=length + count, first_bad_seq=bad,
                                chain=chain)
        length += count
    for chain, head in sorted(heads.items()):  # heads whose records are all gone
        _, bad = _first_bad_in_chain(chain, iter(()), head)
        if bad is not None:
            return VerifyResult(ok=False, length=length, first_bad_seq=bad, chain=chain)
    return VerifyResult(ok=True, length=length)


def chain_length(session: Session) -> int:
    """How many records the log holds."""
    return int(session.scalar(select(func.count()).select_from(AuditRecord)) or 0)


def records_for(session: Session, subject: str) -> list[AuditRecord]:
    """The records about one subject (a transactionId, a UBAI...), oldest first."""
    return list(session.scalars(
        select(AuditRecord).where(AuditRecord.subject == subject).order_by(AuditRecord.seq)
    ))
