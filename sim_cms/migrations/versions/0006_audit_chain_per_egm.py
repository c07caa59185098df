"""The audit log becomes one hash chain per EGM (and one for the rest of the casino)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 02:40:00

Every record written so far belongs to the casino's chain, numbered in it as it was in the
one chain (`chain_seq` = `seq`), and the one head becomes that chain's head: the hashes do
not change, so an existing log still verifies. From now on `seq` is given by the database
(PostgreSQL's sequence is moved past the records written with explicit numbers).

Downgrading keeps every record, but a log that has EGM chains no longer passes the old
single-chain check.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chain', sa.String(length=80), nullable=False,
                                      server_default='casino'))
        batch_op.add_column(sa.Column('chain_seq', sa.Integer(), nullable=True))
    op.execute(sa.text('UPDATE audit_log SET chain_seq = seq'))
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.alter_column('chain', existing_type=sa.String(length=80), server_default=None)
        batch_op.alter_column('chain_seq', existing_type=sa.Integer(), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_audit_log_chain'),
                                          ['chain', 'chain_seq'])

    with op.batch_alter_table('audit_head', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chain', sa.String(length=80), nullable=True))
    op.execute(sa.text("UPDATE audit_head SET chain = 'casino' WHERE id = 1"))
    op.execute(sa.text('DELETE FROM audit_head WHERE chain IS NULL'))
    with op.batch_alter_table('audit_head', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('pk_audit_head'), type_='primary')
        batch_op.drop_column('id')
        batch_op.alter_column('chain', existing_type=sa.String(length=80), nullable=False)
        batch_op.create_primary_key(batch_op.f('pk_audit_head'), ['chain'])

    if op.get_bind().dialect.name == 'postgresql':
        op.execute(sa.text(
            "SELECT setval(pg_get_serial_sequence('audit_log', 'seq'), "
            "COALESCE((SELECT max(seq) FROM audit_log), 1), "
            "(SELECT max(seq) FROM audit_log) IS NOT NULL)"))


def downgrade() -> None:
    with op.batch_alter_table('audit_head', schema=None) as batch_op:
        batch_op.add_column(sa.Column('id', sa.Integer(), nullable=True))
    op.execute(sa.text("DELETE FROM audit_head WHERE chain <> 'casino'"))
    op.execute(sa.text('UPDATE audit_head SET id = 1'))
    with op.batch_alter_table('audit_head', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('pk_audit_head'), type_='primary')
        batch_op.drop_column('chain')
        batch_op.alter_column('id', existing_type=sa.Integer(), nullable=False)
        batch_op.create_primary_key(batch_op.f('pk_audit_head'), ['id'])

    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_audit_log_chain'), type_='unique')
        batch_op.drop_column('chain_seq')
        batch_op.drop_column('chain')
