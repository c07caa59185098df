"""Start-up mistakes as a person makes them: `scanpay serve` (and the sims' WSGI factories under
gunicorn) refuse with one paragraph naming the fix, exit code 2, and no traceback.

Every refusal is a real process. They are started together in one module fixture (each
refusal costs little more than Python's imports, paid once in parallel), then each test reads
its own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

import sim_trustly.app
from simkit.clock import monotonic
from simkit.db import Database, normalise_url
from simkit.migrate import upgrade_to_head
from tests.e2e.processes import SCANPAY, free_port

pytestmark = pytest.mark.slow

PG_SERVER = os.environ.get("SCANPAY_TEST_DATABASE_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
DEADLINE_S = 30.0
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Refusal:
    """How one start-up ended: exit code, stderr as one line, seconds taken."""

    code: int | None
    stderr: str
    seconds: float

    @property
    def said(self) -> str:
        """stderr with line breaks and runs of spaces folded (rich wraps at 80 columns)."""
        return " ".join(self.stderr.split())


def _pg_server_answers() -> bool:
    engine = create_engine(normalise_url(PG_SERVER))
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


def _serve(tmp: Path, *args: str) -> list[str]:
    return [SCANPAY, "serve", "--trustly-port", str(free_port()), "--cms-port",
            str(free_port()), "--data-dir", str(tmp / "data"), *args]


def _gunicorn(app: str) -> list[str]:
    return [sys.executable, "-m", "gunicorn", app, "--preload", "--bind",
            f"127.0.0.1:{free_port()}", "--chdir", str(REPO), "--log-level", "warning"]


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Refusal]]:
    tmp = tmp_path_factory.mktemp("startup-errors")
    trustlys_db = f"sqlite:///{tmp / 'trustly-migrated.db'}"
    database = Database(trustlys_db)
    upgrade_to_head(sim_trustly.app.MIGRATIONS, database)  # a database sim_trustly has used
    database.dispose()
    shared = f"sqlite:///{tmp / 'shared.db'}"
    missing = make_url(normalise_url(PG_SERVER)).set(
        database=f"no_such_db_{uuid.uuid4().hex[:10]}").render_as_string(hide_password=False)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO),
                                                        os.environ.get("PYTHONPATH", "")])}
    env = {k: v for k, v in env.items() if not k.startswith("SCANPAY_")}
    busy = socket.create_server(("127.0.0.1", 0))
    busy_port = busy.getsockname()[1]
    runs: dict[str, tuple[list[str], dict[str, str]]] = {
        "missing_pg_database": (_serve(tmp / "a", "--trustly-db", missing), {}),
        "unparsable_url": (_serve(tmp / "b", "--cms-db", "cms.db"), {}),
        "unsupported_url": (_serve(tmp / "c", "--cms-db", "mysql://casino@127.0.0.1/cms"), {}),
        "one_database_for_both": (_serve(tmp / "d", "--trustly-db", shared, "--cms-db",
                                         shared), {}),
        "cms_on_trustlys_database": (_serve(tmp / "e", "--cms-db", trustlys_db), {}),
        "port_in_use": ([SCANPAY, "serve", "--trustly-port", str(free_port()), "--cms-port",
                         str(busy_port), "--data-dir", str(tmp / "f")], {}),
        "clock_nothing_moves": (_serve(tmp / "g", "--controllable-clock"), {}),
        "wsgi_cms_on_trustlys_database": (_gunicorn("sim_cms.wsgi:create()"),
                                          {"SCANPAY_CMS_DATABASE_URL": trustlys_db}),
        "wsgi_trustly_clock_nothing_moves": (
            _gunicorn("sim_trustly.wsgi:create()"),
            {"SCANPAY_TRUSTLY_DATABASE_URL": f"sqlite:///{tmp / 'w.db'}",
             "SCANPAY_CONTROLLABLE_CLOCK": "1"}),
    }
    started = monotonic()
    processes = {name: subprocess.Popen(args, env={**env, **extra}, cwd=tmp, text=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for name, (args, extra) in runs.items()}
    try:
        ended: dict[str, Refusal] = {}
        for name, process in processes.items():
            try:
                _, err = process.communicate(timeout=DEADLINE_S)
            except subprocess.TimeoutExpired:  # it started instead of refusing: end it
                process.kill()
                _, err = process.communicate()
            ended[name] = Refusal(process.returncode, err, monotonic() - started)
        yield ended
    finally:
        busy.close()


def _refused(refusal: Refusal, *phrases: str) -> None:
    """Exit code 2, every phrase in the message, no traceback, and quickly."""
    assert refusal.code == 2, refusal.stderr[-3000:]
    for phrase in phrases:
        assert phrase in refusal.said, refusal.said
    assert "Traceback" not in refusal.stderr
    assert refusal.seconds < DEADLINE_S


def test_a_missing_postgresql_database_is_named_with_the_createdb_that_fixes_it(
        refusals: dict[str, Refusal]) -> None:
    if not _pg_server_answers():
        pytest.skip(f"no PostgreSQL server at {PG_SERVER}")
    refusal = refusals["missing_pg_database"]
    name = refusal.said.partition('database "')[2].partition('"')[0]
    assert name.startswith("no_such_db_"), refusal.said
    _refused(refusal, "scanpay serve: cannot start: sim_trustly cannot open its database",
             f'database "{name}" does not exist', "Create it (createdb -h", f" {name})",
             "--trustly-db or SCANPAY_TRUSTLY_DATABASE_URL")


def test_a_database_url_that_is_no_url_says_what_one_looks_like(
        refusals: dict[str, Refusal]) -> None:
    _refused(refusals["unparsable_url"], "sim_cms's database URL 'cms.db' is not a URL",
             "sqlite:///data/cms.db or postgresql://USER@HOST:5432/DATABASE",
             "--cms-db or SCANPAY_CMS_DATABASE_URL")


def test_an_unsupported_database_is_refused_naming_the_two_supported(
        refusals: dict[str, Refusal]) -> None:
    _refused(refusals["unsupported_url"],
             "sim_cms's database URL 'mysql://casino@127.0.0.1/cms' is not supported",
             "SQLite or PostgreSQL only")


def test_both_sims_on_one_database_are_refused_before_either_migrates(
        refusals: dict[str, Refusal], tmp_path_factory: pytest.TempPathFactory) -> None:
    refusal = refusals["one_database_for_both"]
    _refused(refusal, "sim_trustly and sim_cms were both given the database sqlite:///",
             "each needs its own", "Give them different databases (--trustly-db and --cms-db)")
    shared = refusal.said.partition("given the database sqlite:///")[2].partition(":")[0]
    if Path(shared).exists():  # nothing was created in it
        engine = create_engine(f"sqlite:///{shared}")
        with engine.connect() as connection:
            assert inspect(connection).get_table_names() == []
        engine.dispose()


def test_a_database_the_other_sim_uses_is_refused_not_migrated(
        refusals: dict[str, Refusal]) -> None:
    _refused(refusals["cms_on_trustlys_database"], "sim_cms's database sqlite:///",
             "holds tables sim_cms does not have (", "payments", "most likely the other sim",
             "--cms-db or SCANPAY_CMS_DATABASE_URL")
    assert "Can't locate revision" not in refusals["cms_on_trustlys_database"].stderr


def test_a_port_in_use_is_named_with_its_flag(refusals: dict[str, Refusal]) -> None:
    refusal = refusals["port_in_use"]
    _refused(refusal, "where sim_cms should listen, is already in use",
             "choose another port with --cms-port")
    assert "Port " not in refusal.stderr  # not the web server's own message (which exits 1)


def test_a_controllable_clock_without_an_admin_token_is_refused(
        refusals: dict[str, Refusal]) -> None:
    _refused(refusals["clock_nothing_moves"], "--controllable-clock needs an admin token",
             "POST /_sim/clock", "Give --admin-token TOKEN (or SCANPAY_ADMIN_TOKEN)")


def test_the_production_entry_points_refuse_the_same_way(
        refusals: dict[str, Refusal]) -> None:
    _refused(refusals["wsgi_cms_on_trustlys_database"], "sim_cms: cannot start:",
             "holds tables sim_cms does not have", "SCANPAY_CMS_DATABASE_URL")
    _refused(refusals["wsgi_trustly_clock_nothing_moves"], "sim_trustly: cannot start:",
             "SCANPAY_CONTROLLABLE_CLOCK needs an admin token", "Give SCANPAY_ADMIN_TOKEN")
