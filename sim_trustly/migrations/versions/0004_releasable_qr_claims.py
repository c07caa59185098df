"""a QR code's claim can be released after a bank refusal

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 23:30:00

`payments.qr_code` was UNIQUE: a code had one payment, ever. A payment the bank refused (it
never reached the CMS) may now hand its claim back (`claim_released_at`), so the same code
can be paid again; the uniqueness becomes a partial unique index over the payments that
still hold their claim, which keeps one live-or-credited payment per code.

SQLite cannot drop a table's UNIQUE constraint, so there the payments table is rebuilt
(copied, dropped, renamed); `simkit.migrate.run_env` turns SQLite's foreign-key enforcement
off for the migration and checks every foreign key before it commits.

Downgrading fails while a code has more than one payment (a released claim was paid again):
the old constraint cannot hold such rows.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import simkit.sqltypes

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = sa.text('claim_released_at IS NULL')


def upgrade() -> None:
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claim_released_at',
                                      simkit.sqltypes.UtcDateTime(timezone=True), nullable=True))
        batch_op.drop_constraint(batch_op.f('uq_payments_qr_code'), type_='unique')
    op.create_index('uq_payments_live_qr_code', 'payments', ['qr_code'], unique=True,
                    sqlite_where=_LIVE, postgresql_where=_LIVE)


def downgrade() -> None:
    op.drop_index('uq_payments_live_qr_code', table_name='payments')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_payments_qr_code'), ['qr_code'])
        batch_op.drop_column('claim_released_at')
