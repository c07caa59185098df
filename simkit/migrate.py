"""Run a sim's Alembic migrations programmatically at start-up.

Each sim keeps its own migrations package (`<sim>/migrations`), whose first revision also
creates the kernel tables of `simkit.models`. Start-up runs `upgrade head` once, in the process
that builds the app before any worker forks, so workers never race on DDL.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, MetaData

from simkit.db import Database


def alembic_config(migrations_dir: Path, database: Database) -> Config:
    """An Alembic config for `migrations_dir` bound to `database` (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes["database"] = database
    return config


def upgrade_to_head(migrations_dir: Path, database: Database) -> None:
    """Bring `database` to the newest revision of `migrations_dir`."""
    command.upgrade(alembic_config(migrations_dir, database), "head")


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
