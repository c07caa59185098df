"""Run a sim's Alembic migrations programmatically at start-up.

Each sim keeps its own migrations package (`<sim>/migrations`), whose first revision also
creates the kernel tables of `simkit.models`. Start-up runs `upgrade head` once, in the process
that builds the app before any worker forks, so workers never race on DDL.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData

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
    """Body of every sim's `env.py`: migrate online over the Database handed in by config."""
    from alembic import context

    database: Database = context.config.attributes["database"]
    with database.engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=database.is_sqlite,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
