"""OAuth scopes on access tokens, and the token endpoint's lockout counts

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 20:30:00

Tokens issued before scopes existed are deleted rather than given a guessed scope: their
clients get 401 INVALID_TOKEN on the next call and fetch a new, scoped token, as they do
after any expiry.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import simkit.sqltypes

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.text('DELETE FROM access_tokens'))
    with op.batch_alter_table('access_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scope', sa.String(length=256), nullable=False,
                                      server_default=''))
    op.create_table('oauth_lockouts',
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_start', simkit.sqltypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('locked_until', simkit.sqltypes.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('client_id', 'source', name=op.f('pk_oauth_lockouts'))
    )


def downgrade() -> None:
    op.drop_table('oauth_lockouts')
    with op.batch_alter_table('access_tokens', schema=None) as batch_op:
        batch_op.drop_column('scope')
