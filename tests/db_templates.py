"""Migrated template databases, so a test's fresh database need not run every migration.

A sim's `create_app` migrates its database to head before it seeds it. Run once per test,
those migrations were most of what a database-backed test paid for its database: on
PostgreSQL about a tenth of a second per sim. Here each sim's migrations run once per test
session into a template; a test's database is then a copy of that template (PostgreSQL's
`CREATE DATABASE ... TEMPLATE`, a file copy on SQLite), still its own and still fresh, and
the sim's start-up finds it at head and goes straight to seeding.

A template is keyed by a digest of every file of the migrations package, so a migration added
or edited during a session gets a new template rather than a stale one. Databases the tests
are done with are dropped by one background thread, so a test does not wait for the drop;
at most `PENDING_DROPS` wait for it, so a slow server holds the tests back rather than
filling its disk with databases nobody uses.
"""

from __future__ import annotations

import hashlib
import queue
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url

from simkit.db import Database, normalise_url, sqlite_url
from simkit.migrate import upgrade_to_head

_SESSION = uuid.uuid4().hex[:8]
PENDING_DROPS = 8


def migrations_digest(migrations_dir: Path) -> str:
    """A digest of every Python file of a migrations package: names and contents."""
    digest = hashlib.sha256()
    for path in sorted(migrations_dir.rglob("*.py")):
        digest.update(str(path.relative_to(migrations_dir)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def database_url(server: str, name: str) -> str:
    """The URL of database `name` on the server of URL `server`."""
    return make_url(normalise_url(server)).set(database=name).render_as_string(
        hide_password=False)


class PostgresServer:
    """The test server's administration: creating, templating and dropping databases.

    One AUTOCOMMIT connection serves every CREATE DATABASE of the session; drops are queued
    to a daemon thread with its own connection. `close` waits for the queued drops, drops
    the templates and reports any drop that failed.
    """

    def __init__(self, server: str) -> None:
        self.server = server
        self._engine: Engine = create_engine(normalise_url(server), isolation_level="AUTOCOMMIT",
                                             pool_size=2, max_overflow=0)
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._templates: dict[str, str] = {}
        self._drops: queue.Queue[str | None] = queue.Queue(maxsize=PENDING_DROPS)
        self._failed: list[str] = []
        self._dropper: threading.Thread | None = None

    def _execute(self, statement: str) -> None:
        with self._lock:
            if self._conn is None:
                self._conn = self._engine.connect()
            self._conn.execute(text(statement))

    def create(self, name: str, *, template: str | None = None) -> None:
        """CREATE DATABASE `name`, a copy of `template` when given."""
        suffix = f' TEMPLATE "{template}"' if template else ""
        self._execute(f'CREATE DATABASE "{name}"{suffix}')

    def template(self, migrations_dir: Path) -> str:
        """The session's template database at the head of `migrations_dir`, made on first use."""
        key = f"{migrations_dir.parent.name}_{migrations_digest(migrations_dir)}"
        name = self._templates.get(key)
        if name is None:
            name = f"scanpay_tpl_{_SESSION}_{key}"
            self.create(name)
            self._templates[key] = name
            database = Database(database_url(self.server, name))
            try:
                upgrade_to_head(migrations_dir, database)
            finally:
                database.engine.dispose()  # no session may stay on a database copied from
        return name

    def drop_later(self, name: str) -> None:
        """Queue `name` to be dropped (terminating its sessions) by the background thread."""
        if self._dropper is None:
            self._dropper = threading.Thread(target=self._drop_queued, name="db-dropper",
                                             daemon=True)
            self._dropper.start()
        self._drops.put(name)

    def _drop_queued(self) -> None:
        with self._engine.connect() as conn:
            while (name := self._drops.get()) is not None:
                try:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                except Exception as error:  # any failure is reported by close()
                    self._failed.append(f"{name}: {error}")

    def close(self) -> None:
        """Finish the queued drops, drop the templates; fail if any drop failed."""
        if self._dropper is not None:
            self._drops.put(None)
            self._dropper.join()
        for name in self._templates.values():
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if self._conn is not None:
            self._conn.close()
        self._engine.dispose()
        if self._failed:
            raise RuntimeError(f"test databases left on the server: {self._failed}")


class SqliteTemplates:
    """Migrated SQLite template files, one per migrations package, in a session directory."""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._templates: dict[str, Path] = {}

    def template(self, migrations_dir: Path) -> Path:
        """The session's template file at the head of `migrations_dir`, made on first use."""
        key = f"{migrations_dir.parent.name}_{migrations_digest(migrations_dir)}"
        path = self._templates.get(key)
        if path is None:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="scanpay-db-templates-"))
            path = self._dir / f"{key}.db"
            database = Database(sqlite_url(str(path)))
            try:
                upgrade_to_head(migrations_dir, database)
            finally:
                database.engine.dispose()  # the last connection's close folds the WAL back in
            leftovers = [p.name for p in self._dir.glob(f"{key}.db-*")]
            if leftovers:
                raise RuntimeError(f"template {path} still has {leftovers} after closing")
            self._templates[key] = path
        return path

    def copy(self, migrations_dir: Path, destination: Path) -> None:
        """Make `destination` a copy of the template of `migrations_dir`."""
        shutil.copyfile(self.template(migrations_dir), destination)

    def close(self) -> None:
        """Remove the template files."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None
        self._templates.clear()


class Templates:
    """The process's template registry: one PostgreSQL server per URL, SQLite templates."""

    def __init__(self) -> None:
        self._servers: dict[str, PostgresServer] = {}
        self.sqlite = SqliteTemplates()

    def server(self, url: str) -> PostgresServer:
        """The administration of the PostgreSQL server at `url`, opened on first use."""
        server = self._servers.get(url)
        if server is None:
            server = self._servers[url] = PostgresServer(url)
        return server

    def close(self) -> None:
        """Close every server (finishing its drops) and remove the SQLite templates."""
        servers, self._servers = list(self._servers.values()), {}
        self.sqlite.close()
        for server in servers:
            server.close()


TEMPLATES = Templates()
