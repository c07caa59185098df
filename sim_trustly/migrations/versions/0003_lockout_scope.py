"""lockouts counted per (accessId, source)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 17:40:00

The lockout key grows a `source` column (the caller's address, or `*` when the lockout is
scoped to the accessId alone). Lockout rows are short-lived counters (a minute by default),
so the table is recreated rather than migrated row by row.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import simkit.sqltypes

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _create(with_source: bool) -> None:
    key = ['access_id', 'source'] if with_source else ['access_id']
    source = [sa.Column('source', sa.String(length=64), nullable=False)] if with_source else []
    op.create_table('auth_lockouts',
    sa.Column('access_id', sa.String(length=128), nullable=False),
    *source,
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_start', simkit.sqltypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('locked_until', simkit.sqltypes.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint(*key, name=op.f('pk_auth_lockouts'))
    )


def upgrade() -> None:
    op.drop_table('auth_lockouts')
    _create(with_source=True)


def downgrade() -> None:
    op.drop_table('auth_lockouts')
    _create(with_source=False)
