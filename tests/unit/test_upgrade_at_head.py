"""`upgrade_to_head` leaves a database at head alone, but never one a newer revision is for.

Start-up skips Alembic when the database is already at the head of the migrations package,
and remembers that head for the process. A revision added to the package while the process
lives (a deployment that copies new code under a running worker, or a test that adds one)
must still be applied by the next start-up on the same process.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from sim_trustly.app import MIGRATIONS
from simkit.db import Database
from simkit.migrate import alembic_config, upgrade_to_head
from tests.conftest import DatabaseFactory

pytestmark = pytest.mark.db

NEW_REVISION = '''"""A table added after the package was first read."""

from alembic import op
import sqlalchemy as sa

revision = "9999"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("added_later", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("added_later")
'''


@pytest.fixture
def database(databases: DatabaseFactory) -> Iterator[Database]:
    """An empty database, closed after the test."""
    db = Database(databases.new("at-head"))
    yield db
    db.engine.dispose()


def test_a_revision_added_after_a_start_up_is_applied_by_the_next(
        database: Database, tmp_path: Path) -> None:
    package = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, package, ignore=shutil.ignore_patterns("__pycache__"))
    upgrade_to_head(package, database)
    upgrade_to_head(package, database)  # at head: nothing to do, and the head is remembered
    assert "added_later" not in inspect(database.engine).get_table_names()

    head = ScriptDirectory.from_config(alembic_config(package, database)).get_current_head()
    (package / "versions" / "9999_added_later.py").write_text(NEW_REVISION.format(head=head))
    upgrade_to_head(package, database)

    assert "added_later" in inspect(database.engine).get_table_names()

