"""Driver connections for hot reads: reused across threads, never leaked, never shared by a fork."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from simkit.db import Database, sqlite_url
from simkit.models import KernelBase


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_thread_per_request_server_leaves_no_connection_behind(tmp_path: Path) -> None:
    db = Database(sqlite_url(str(tmp_path / "hot.db")))
    KernelBase.metadata.create_all(db.engine)
    sql = "SELECT method, path FROM sim_faults"
    db.hot_read(sql)
    before = _open_descriptors()
    for _ in range(60):  # one short-lived thread per request, as werkzeug's threaded server
        thread = threading.Thread(target=db.hot_read, args=(sql,))
        thread.start()
        thread.join()
    assert _open_descriptors() <= before + 2
    db.dispose()


def test_one_thread_reuses_its_connection_and_sees_new_commits(tmp_path: Path) -> None:
    db = Database(sqlite_url(str(tmp_path / "hot.db")))
    KernelBase.metadata.create_all(db.engine)
    sql = "SELECT count(*) FROM sim_faults"
    assert db.hot_read(sql) == [(0,)]
    opened = _open_descriptors()
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO sim_faults (method, path, action, delay_ms, probability, fired, "
            "created_at) VALUES ('*', '/x', 'drop', 0, 1.0, 0, '2026-01-01 00:00:00')")
    assert db.hot_read(sql) == [(1,)]
    assert _open_descriptors() <= opened + 2  # the engine's pooled connection, not a new one
    db.dispose()


def test_a_forked_child_never_uses_its_parents_connection(tmp_path: Path) -> None:
    db = Database(sqlite_url(str(tmp_path / "hot.db")))
    KernelBase.metadata.create_all(db.engine)
    hot = db._hot  # the object under test; nothing else exposes its connections
    parent_connection = hot._take()
    hot._give(parent_connection)
    pid = os.fork()
    if pid == 0:  # the child: a connection of its own, and reads still work
        ok = hot._take() is not parent_connection and db.hot_read("SELECT 1") == [(1,)]
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert db.hot_read("SELECT 1") == [(1,)]  # the parent's connection survived the child
    db.dispose()
