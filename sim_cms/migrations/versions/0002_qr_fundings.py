"""one funding per QR token: qr_fundings

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 17:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import simkit.sqltypes

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('qr_fundings',
    sa.Column('qr_token_id', sa.String(length=128), nullable=False),
    sa.Column('transaction_id', sa.String(length=128), nullable=False),
    sa.Column('funded_at', simkit.sqltypes.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('qr_token_id', name=op.f('pk_qr_fundings'))
    )


def downgrade() -> None:
    op.drop_table('qr_fundings')
