"""Hot-path transactions on driver connections (PostgreSQL): committed, rolled back, reused.

They run where the database-backed tests run on PostgreSQL (`SCANPAY_TEST_DATABASE_URL`, as
.ci/run sets it); on SQLite `hot_transaction()` refuses, which is checked too.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from simkit.db import Database
from simkit.hot_connections import HotIntegrityError
from tests.conftest import DatabaseFactory

pytestmark = pytest.mark.db

COUNT = "SELECT count(*) AS n FROM hot_items"


@pytest.fixture
def db(databases: DatabaseFactory) -> Iterator[Database]:
    database = Database(databases.new("hot"))
    with database.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE hot_items (id INTEGER PRIMARY KEY, v TEXT)")
    yield database
    database.dispose()


def _count(db: Database) -> int:
    ((n,),) = db.hot_read(COUNT)
    return int(n)


def _postgresql_only(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("hot transactions run on PostgreSQL (set SCANPAY_TEST_DATABASE_URL)")


def test_sqlite_refuses_hot_transactions(databases: DatabaseFactory) -> None:
    if databases.backend != "sqlite":
        pytest.skip("the refusal is SQLite's")
    database = Database(databases.new("refuse"))
    with pytest.raises(NotImplementedError), database.hot_transaction():
        pass
    database.dispose()


def test_statements_commit_together_when_the_block_ends(db: Database) -> None:
    _postgresql_only(db)
    with db.hot_transaction() as tx:
        tx.first("INSERT INTO hot_items VALUES (:id, :v) RETURNING id", {"id": 1, "v": "a"})
        row = tx.first("INSERT INTO hot_items VALUES (:id, :v) RETURNING id, v",
                       {"id": 2, "v": "b"})
        assert row is not None and (row.id, row.v) == (2, "b")  # rows are read by column name
        assert _count(db) == 0  # another connection sees nothing before the commit
    assert _count(db) == 2


def test_an_exception_rolls_everything_back(db: Database) -> None:
    _postgresql_only(db)
    with pytest.raises(RuntimeError), db.hot_transaction() as tx:
        tx.first("INSERT INTO hot_items VALUES (:id, :v) RETURNING id", {"id": 1, "v": "a"})
        raise RuntimeError("decided against it")
    assert _count(db) == 0
    with db.hot_transaction() as tx:  # and the connection is clean for the next transaction
        tx.first("INSERT INTO hot_items VALUES (:id, :v) RETURNING id", {"id": 1, "v": "a"})
    assert _count(db) == 1


def test_a_unique_key_refusal_is_a_hot_integrity_error_and_rolls_back(db: Database) -> None:
    _postgresql_only(db)
    with db.hot_transaction() as tx:
        tx.first("INSERT INTO hot_items VALUES (:id, :v) RETURNING id", {"id": 1, "v": "a"})
    with pytest.raises(HotIntegrityError), db.hot_transaction() as tx:
        tx.first("INSERT INTO hot_items VALUES (:id, :v) RETURNING id", {"id": 2, "v": "b"})
        tx.first("INSERT INTO hot_items VALUES (:id, :v) RETURNING id", {"id": 1, "v": "c"})
    assert db.hot_read("SELECT id, v FROM hot_items ORDER BY id") == [(1, "a")]


def test_first_and_commit_commits_in_the_same_round_trip(db: Database) -> None:
    _postgresql_only(db)
    with db.hot_transaction() as tx:
        tx.first("INSERT INTO hot_items VALUES (:id, :v) RETURNING id", {"id": 1, "v": "a"})
        row = tx.first_and_commit("INSERT INTO hot_items VALUES (:id, :v) RETURNING v",
                                  {"id": 2, "v": "it's"})  # quoting survives client binding
        assert row is not None and row.v == "it's"
        assert _count(db) == 2  # committed before the block ends
    assert _count(db) == 2


def test_first_and_commit_that_fails_commits_nothing(db: Database) -> None:
    _postgresql_only(db)
    with db.hot_transaction() as tx:
        tx.first("INSERT INTO hot_items VALUES (:id, :v) RETURNING id", {"id": 1, "v": "a"})
    with pytest.raises(HotIntegrityError), db.hot_transaction() as tx:
        tx.first("INSERT INTO hot_items VALUES (:id, :v) RETURNING id", {"id": 2, "v": "b"})
        tx.first_and_commit("INSERT INTO hot_items VALUES (:id, :v) RETURNING id",
                            {"id": 1, "v": "dup"})
    assert db.hot_read("SELECT id, v FROM hot_items ORDER BY id") == [(1, "a")]


def test_hot_reads_after_a_transaction_run_in_autocommit_again(db: Database) -> None:
    _postgresql_only(db)
    with db.hot_transaction() as tx:
        tx.first("INSERT INTO hot_items VALUES (:id, :v) RETURNING id", {"id": 1, "v": "a"})
    _count(db)  # the same driver connection, back in autocommit
    with db.engine.connect() as connection:  # so it holds no snapshot and no lock
        active = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'idle in transaction'").scalar_one()
    assert active == 0


def test_a_connection_numbered_past_1023_still_answers(db: Database) -> None:
    """A server process holding many sockets hands new connections descriptors above 1023,
    which select() refuses: the driver connection must wait on them all the same."""
    _postgresql_only(db)
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        probe = os.open(os.devnull, os.O_RDONLY)
        os.close(probe)
        assert probe > 1023  # the next connection's socket is numbered past select()'s range
        answers: list[int] = []

        def in_a_new_thread() -> None:  # a new thread opens its own driver connection
            with db.hot_transaction() as tx:
                tx.first("INSERT INTO hot_items VALUES (:id, :v) RETURNING id", {"id": 7, "v": "x"})
            answers.append(_count(db))

        worker = threading.Thread(target=in_a_new_thread)
        worker.start()
        worker.join(timeout=60)
        assert answers == [1]
    finally:
        for fd in fillers:
            os.close(fd)
