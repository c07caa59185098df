"""the database guards the ledger: append-only rows, balanced transactions

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 20:30:00

`sim_cms.ledger` is the only writer of ledger rows, and writes them balanced; these
triggers make the database itself refuse what a bug, a hand-written statement or a future
writer could do instead, on both dialects:

- Append-only: every UPDATE of a ledger row (a leg or a transaction's header) is refused, and
  every DELETE, except inside a database transaction that holds a row in `ledger_wipe`: a
  reset of the whole sim inserts one, empties the tables and deletes it before committing, so
  no other transaction ever sees it. PostgreSQL's TRUNCATE fires no row trigger, so it gets a
  statement trigger of its own, with the same exception.
- Balanced: every ledger transaction's legs sum to zero, kept true insert by insert.
  SQLite has no statement-level and no deferred triggers, so its rule is "legs first, header
  last": the header's insert checks that the legs written before it sum to zero, a leg whose
  header already exists is refused, and the legs' foreign key to the header is checked at
  commit (DEFERRABLE INITIALLY DEFERRED), so a leg left without a header fails the commit.
  PostgreSQL checks each INSERT statement's new legs (its transition table) to sum to zero
  per ledger transaction; the funding paths write a header and both legs in one statement.
  Neither refuses a header with no legs at all (it sums to zero and moves nothing).

On PostgreSQL the funding paths pay one statement-level trigger per funding, which reads the
statement's two new legs from memory: no extra query, about 10 us of server time.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FK = 'fk_ledger_entries_transaction_id_ledger_transactions'
_LEDGER_TABLES = ('ledger_entries', 'ledger_transactions')

_SQLITE_TRIGGERS = (  # per ledger table
    """
        CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
        BEGIN
            SELECT RAISE(ABORT, '{table} is append-only: a ledger row is never updated');
        END""",
    """
        CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
        WHEN NOT EXISTS (SELECT 1 FROM ledger_wipe)
        BEGIN
            SELECT RAISE(ABORT, '{table} is append-only: a ledger row is never deleted, \
only a reset of the whole sim empties the ledger');
        END""",
)
_SQLITE_LEGS_FIRST = """
    CREATE TRIGGER ledger_entries_before_header BEFORE INSERT ON ledger_entries
    WHEN EXISTS (SELECT 1 FROM ledger_transactions WHERE id = NEW.transaction_id)
    BEGIN
        SELECT RAISE(ABORT, 'ledger transaction already written: \
its legs are written before its header, never after');
    END"""
_SQLITE_BALANCED = """
    CREATE TRIGGER ledger_transactions_balanced AFTER INSERT ON ledger_transactions
    WHEN (SELECT coalesce(sum(amount), 0) <> 0 FROM ledger_entries
          WHERE transaction_id = NEW.id)
    BEGIN
        SELECT RAISE(ABORT, 'ledger transaction does not balance: \
its legs, written before it, must sum to zero');
    END"""

_PG_REFUSE_CHANGE = """
    CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('DELETE', 'TRUNCATE') AND EXISTS (SELECT 1 FROM ledger_wipe) THEN
            RETURN OLD;  -- a reset of the whole sim, in its own transaction
        END IF;
        RAISE EXCEPTION '% is append-only: a ledger row is never %d', TG_TABLE_NAME,
                        lower(TG_OP)
            USING ERRCODE = 'restrict_violation',
                  HINT = 'only a reset of the whole sim empties the ledger';
    END $$"""
_PG_NEW_LEGS_BALANCE = """
    CREATE FUNCTION ledger_new_legs_balance() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        unbalanced integer;
    BEGIN
        SELECT transaction_id INTO unbalanced FROM new_legs
        GROUP BY transaction_id HAVING sum(amount) <> 0 LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'ledger transaction % does not balance: \
the legs a statement writes for it must sum to zero', unbalanced
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END $$"""


def upgrade() -> None:
    op.create_table('ledger_wipe',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_wipe'))
    )
    if op.get_bind().dialect.name == 'sqlite':
        _upgrade_sqlite()
    else:
        _upgrade_postgresql()


def _upgrade_sqlite() -> None:
    with op.batch_alter_table('ledger_entries', recreate='always') as batch_op:
        batch_op.drop_constraint(_FK, type_='foreignkey')
        batch_op.create_foreign_key(_FK, 'ledger_transactions', ['transaction_id'], ['id'],
                                    deferrable=True, initially='DEFERRED')
    for table in _LEDGER_TABLES:
        for template in _SQLITE_TRIGGERS:
            op.execute(template.format(table=table))
    op.execute(_SQLITE_LEGS_FIRST)
    op.execute(_SQLITE_BALANCED)


def _upgrade_postgresql() -> None:
    op.execute(f'ALTER TABLE ledger_entries ALTER CONSTRAINT {_FK} DEFERRABLE INITIALLY DEFERRED')
    op.execute(_PG_REFUSE_CHANGE)
    op.execute(_PG_NEW_LEGS_BALANCE)
    for table in _LEDGER_TABLES:
        op.execute(f'CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} '
                   'FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()')
        op.execute(f'CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} '
                   'FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()')
    op.execute('CREATE TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries '
               'REFERENCING NEW TABLE AS new_legs '
               'FOR EACH STATEMENT EXECUTE FUNCTION ledger_new_legs_balance()')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        for table in _LEDGER_TABLES:
            op.execute(f'DROP TRIGGER {table}_no_update')
            op.execute(f'DROP TRIGGER {table}_no_delete')
        op.execute('DROP TRIGGER ledger_entries_before_header')
        op.execute('DROP TRIGGER ledger_transactions_balanced')
        with op.batch_alter_table('ledger_entries', recreate='always') as batch_op:
            batch_op.drop_constraint(_FK, type_='foreignkey')
            batch_op.create_foreign_key(_FK, 'ledger_transactions', ['transaction_id'], ['id'])
    else:
        for table in _LEDGER_TABLES:
            op.execute(f'DROP TRIGGER {table}_append_only ON {table}')
            op.execute(f'DROP TRIGGER {table}_no_truncate ON {table}')
        op.execute('DROP TRIGGER ledger_entries_balanced ON ledger_entries')
        op.execute('DROP FUNCTION ledger_refuse_change()')
        op.execute('DROP FUNCTION ledger_new_legs_balance()')
        op.execute(f'ALTER TABLE ledger_entries ALTER CONSTRAINT {_FK} NOT DEFERRABLE')
    op.drop_table('ledger_wipe')
