"""The request journal loses its index on path

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 23:30:00

The journal is read by path prefix (`LIKE 'prefix%' ESCAPE '/'`), which neither SQLite nor
PostgreSQL can answer from a plain index on the column (both scan, newest first); the index
only cost every journaled request an index insert.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('sim_journal', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sim_journal_path'))


def downgrade() -> None:
    with op.batch_alter_table('sim_journal', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sim_journal_path'), ['path'], unique=False)
