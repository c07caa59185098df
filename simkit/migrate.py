"""Run a sim's Alembic migrations programmatically at start-up.

Each sim keeps its own migrations package (`<sim>/migrations`), whose first revision also
creates the kernel tables of `simkit.models`. Start-up runs `upgrade head` once, in the process
that builds the app before any worker forks, so workers never race on DDL.

A database already at head is left alone without running Alembic's environment: loading and
compiling every revision file cost more than the rest of a restart on a migrated database.
The heads are read from the revision files once per process, and read again if a file of the
package is added, removed or changed.
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData

from simkit.db import Database


def alembic_config(migrations_dir: Path, database: Database) -> Config:
    """An Alembic config for `migrations_dir` bound to `database` (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes["database"] = database
    return config


Fingerprint = tuple[tuple[str, int, int], ...]
_heads_lock = threading.Lock()
_heads_cache: dict[Path, tuple[Fingerprint, frozenset[str]]] = {}


def upgrade_to_head(migrations_dir: Path, database: Database) -> None:
    """Bring `database` to the newest revision of `migrations_dir`."""
    config = alembic_config(migrations_dir, database)
    if _current_heads(database) == _script_heads(migrations_dir, config):
        return
    command.upgrade(config, "head")


def _current_heads(database: Database) -> frozenset[str]:
    """The revisions `database` is at (none for a database never migrated)."""
    with database.engine.connect() as connection:
        return frozenset(MigrationContext.configure(connection).get_current_heads())


def _script_heads(migrations_dir: Path, config: Config) -> frozenset[str]:
    """The head revisions of `migrations_dir`, cached while its files stay the same."""
    fingerprint = _fingerprint(migrations_dir)
    with _heads_lock:
        cached = _heads_cache.get(migrations_dir)
        if cached is None or cached[0] != fingerprint:
            heads = frozenset(ScriptDirectory.from_config(config).get_heads())
            cached = _heads_cache[migrations_dir] = (fingerprint, heads)
        return cached[1]


def _fingerprint(migrations_dir: Path) -> Fingerprint:
    """Name, size and modification time of every Python file of the migrations package."""
    files = []
    for path in sorted(migrations_dir.rglob("*.py")):
        stat = path.stat()
        files.append((str(path.relative_to(migrations_dir)), stat.st_size, stat.st_mtime_ns))
    return tuple(files)


def run_env(target_metadata: list[MetaData]) -> None:
    """Body of every sim's `env.py`: migrate online over the Database handed in by config.

    On SQLite, foreign keys are not enforced while the migrations run: a migration that
    rebuilds a table (SQLite's only way to drop a constraint) drops the old table, and with
    enforcement on that drop would delete, or refuse for, the rows other tables point at.
    Every foreign key is checked before the migrations commit, as SQLite's own procedure for
    changing a table asks (https://sqlite.org/lang_altertable.html#otheralter).
    """
    from alembic import context

    database: Database = context.config.attributes["database"]
    with database.engine.connect() as connection:
        if database.is_sqlite:
            _sqlite_foreign_keys(connection, on=False)
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=database.is_sqlite,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
                if database.is_sqlite:
                    _refuse_broken_foreign_keys(connection)
            connection.commit()
        finally:
            if database.is_sqlite:
                _sqlite_foreign_keys(connection, on=True)


def _sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    """Turn enforcement on or off; outside any transaction, where SQLite honours the PRAGMA.

    Run on the driver connection directly: through SQLAlchemy it would begin a transaction
    first (`simkit.db` emits BEGIN itself), inside which the PRAGMA does nothing.
    """
    connection.connection.driver_connection.execute(  # type: ignore[union-attr]
        f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def _refuse_broken_foreign_keys(connection: Connection) -> None:
    """Fail the migration (it then rolls back) if any row points at a row that is gone."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"the migration would leave broken foreign keys: {broken[:5]}")
