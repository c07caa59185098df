"""Each sim's Alembic migrations build exactly the schema its models describe.

The comparison uses Alembic's autogenerate API, so a model change without a migration (or a
migration that differs from the models) fails here, on SQLite and, in CI, on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, String, inspect

import sim_cms
import sim_trustly
from sim_cms.models import Base as CmsBase
from sim_trustly.models import Base as TrustlyBase
from simkit.db import Database
from simkit.migrate import alembic_config, upgrade_to_head
from simkit.models import KernelBase
from tests.conftest import DatabaseFactory

pytestmark = pytest.mark.db


@dataclass(frozen=True)
class SimSchema:
    """A sim's migrations package and the metadata its models declare."""

    migrations_dir: Path
    metadatas: tuple[MetaData, ...]


SIMS = [
    pytest.param(
        SimSchema(
            Path(sim_trustly.__file__).parent / "migrations",
            (KernelBase.metadata, TrustlyBase.metadata),
        ),
        id="sim_trustly",
    ),
    pytest.param(
        SimSchema(
            Path(sim_cms.__file__).parent / "migrations",
            (KernelBase.metadata, CmsBase.metadata),
        ),
        id="sim_cms",
    ),
]


@pytest.fixture
def database(databases: DatabaseFactory) -> Iterator[Database]:
    """A fresh, empty database (no migrations run yet)."""
    db = Database(databases.new("migrations"))
    yield db
    db.dispose()


def schema_diff(database: Database, metadatas: tuple[MetaData, ...]) -> list[Any]:
    """Alembic's autogenerate differences between the live schema and `metadatas`."""
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        # Alembic accepts a sequence of MetaData here, as env.py's target_metadata does,
        # though its annotation names a single MetaData.
        return list(compare_metadata(context, list(metadatas)))  # type: ignore[arg-type]


def current_revision(database: Database) -> str | None:
    """The revision recorded in the database's alembic_version table."""
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(sim: SimSchema, database: Database) -> str | None:
    """The newest revision of the sim's migration scripts."""
    scripts = ScriptDirectory.from_config(alembic_config(sim.migrations_dir, database))
    return scripts.get_current_head()


def model_tables(sim: SimSchema) -> set[str]:
    """Every table the sim's models declare."""
    return {name for metadata in sim.metadatas for name in metadata.tables}


def live_tables(database: Database) -> set[str]:
    """Every table present in the database."""
    return set(inspect(database.engine).get_table_names())


@pytest.mark.parametrize("sim", SIMS)
def test_migrated_schema_matches_the_models(sim: SimSchema, database: Database) -> None:
    upgrade_to_head(sim.migrations_dir, database)
    assert schema_diff(database, sim.metadatas) == []
    assert current_revision(database) == head_revision(sim, database)


@pytest.mark.parametrize("sim", SIMS)
def test_upgrading_an_up_to_date_database_changes_nothing(
    sim: SimSchema, database: Database
) -> None:
    upgrade_to_head(sim.migrations_dir, database)
    revision, tables = current_revision(database), live_tables(database)
    upgrade_to_head(sim.migrations_dir, database)
    assert current_revision(database) == revision
    assert live_tables(database) == tables
    assert schema_diff(database, sim.metadatas) == []


@pytest.mark.parametrize("sim", SIMS)
def test_downgrade_to_base_drops_every_table_and_upgrade_rebuilds_them(
    sim: SimSchema, database: Database
) -> None:
    upgrade_to_head(sim.migrations_dir, database)
    command.downgrade(alembic_config(sim.migrations_dir, database), "base")
    assert live_tables(database) & model_tables(sim) == set()
    assert current_revision(database) is None
    upgrade_to_head(sim.migrations_dir, database)
    assert live_tables(database) >= model_tables(sim)
    assert schema_diff(database, sim.metadatas) == []


def _copy(metadatas: tuple[MetaData, ...]) -> MetaData:
    """One metadata holding copies of every table in `metadatas`, free to be altered."""
    merged = MetaData()
    for metadata in metadatas:
        for table in metadata.tables.values():
            table.to_metadata(merged)
    return merged


@pytest.mark.parametrize("sim", SIMS)
def test_comparison_reports_a_column_missing_from_the_migrations(
    sim: SimSchema, database: Database
) -> None:
    upgrade_to_head(sim.migrations_dir, database)
    drifted = _copy(sim.metadatas)
    drifted.tables["sim_clock"].append_column(Column("added_later", Integer, nullable=True))
    diff = schema_diff(database, (drifted,))
    assert [(entry[0], entry[3].name) for entry in diff] == [("add_column", "added_later")]


@pytest.mark.parametrize("sim", SIMS)
def test_comparison_reports_a_timestamp_column_whose_type_changed(
    sim: SimSchema, database: Database
) -> None:
    upgrade_to_head(sim.migrations_dir, database)
    drifted = _copy(sim.metadatas)
    drifted.tables["sim_journal"].c.at.type = String(40)
    diff = schema_diff(database, (drifted,))
    assert [(change[0][0], change[0][3]) for change in diff] == [("modify_type", "at")]
