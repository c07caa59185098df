"""A ledger leg's account is checked by the ledger's triggers, not by a foreign key

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 09:40:00

Every funding writes one leg on its currency's settlement account. A foreign key checks the
row it references with `SELECT ... FOR KEY SHARE`, so on PostgreSQL every funding in flight
took a share lock on that one row, and when several transactions share-lock a row PostgreSQL
records them in a multixact: on 8 clients that cost a fifth of the fundings' throughput
(docs/performance.md). The rule stays the database's own, on both dialects, without the lock:

- a leg must name an account that exists: on PostgreSQL the statement trigger that checks a
  statement's new legs balance now also looks their accounts up; on SQLite a BEFORE INSERT
  trigger does;
- accounts are append-only, as the ledger is: no UPDATE, and no DELETE or TRUNCATE except in
  a reset of the whole sim (a transaction holding a `ledger_wipe` row), so an account cannot
  go away after a leg was checked against it.

SQLite cannot drop a foreign key in place: `ledger_entries` is rebuilt, which drops its
triggers, and they are made again as migration 0003 made them (as is the header's balance
trigger, which names the table and would stop its rebuild).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACCOUNT_FK = 'fk_ledger_entries_account_id_accounts'
_HEADER_FK = 'fk_ledger_entries_transaction_id_ledger_transactions'

# SQLite: append-only, as migration 0003 made it per ledger table (a rebuilt table loses its
# triggers), for ledger_entries again and now for accounts.
_SQLITE_APPEND_ONLY = (
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
_SQLITE_KNOWN_ACCOUNT = """
    CREATE TRIGGER ledger_entries_known_account BEFORE INSERT ON ledger_entries
    WHEN NOT EXISTS (SELECT 1 FROM accounts WHERE id = NEW.account_id)
    BEGIN
        SELECT RAISE(ABORT, 'ledger leg names no account: \
a leg must name an account that exists');
    END"""
_SQLITE_BALANCED = """
    CREATE TRIGGER ledger_transactions_balanced AFTER INSERT ON ledger_transactions
    WHEN (SELECT coalesce(sum(amount), 0) <> 0 FROM ledger_entries
          WHERE transaction_id = NEW.id)
    BEGIN
        SELECT RAISE(ABORT, 'ledger transaction does not balance: \
its legs, written before it, must sum to zero');
    END"""

# PostgreSQL: one statement trigger checks a statement's new legs, their accounts first.
_PG_CHECK_NEW_LEGS = """
    CREATE FUNCTION ledger_check_new_legs() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        unknown text;
        unbalanced integer;
    BEGIN
        SELECT leg.account_id INTO unknown FROM new_legs leg
        WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = leg.account_id) LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'ledger leg names no account: %', unknown
                USING ERRCODE = 'foreign_key_violation',
                      HINT = 'a leg must name an account that exists';
        END IF;
        SELECT transaction_id INTO unbalanced FROM new_legs
        GROUP BY transaction_id HAVING sum(amount) <> 0 LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'ledger transaction % does not balance: \
the legs a statement writes for it must sum to zero', unbalanced
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END $$"""
_PG_LEGS_TRIGGER = ('CREATE TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries '
                    'REFERENCING NEW TABLE AS new_legs '
                    'FOR EACH STATEMENT EXECUTE FUNCTION {function}()')


def _sqlite_append_only(table: str) -> list[str]:
    return [template.format(table=table) for template in _SQLITE_APPEND_ONLY]


def upgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('DROP TRIGGER ledger_transactions_balanced')
        with op.batch_alter_table('ledger_entries', recreate='always') as batch_op:
            batch_op.drop_constraint(_ACCOUNT_FK, type_='foreignkey')
            batch_op.drop_constraint(_HEADER_FK, type_='foreignkey')
            batch_op.create_foreign_key(_HEADER_FK, 'ledger_transactions', ['transaction_id'],
                                        ['id'], deferrable=True, initially='DEFERRED')
        for trigger in (*_sqlite_append_only('ledger_entries'), _SQLITE_LEGS_FIRST,
                        _SQLITE_BALANCED, _SQLITE_KNOWN_ACCOUNT,
                        *_sqlite_append_only('accounts')):
            op.execute(trigger)
        return
    op.execute(f'ALTER TABLE ledger_entries DROP CONSTRAINT {_ACCOUNT_FK}')
    op.execute(_PG_CHECK_NEW_LEGS)
    op.execute('DROP TRIGGER ledger_entries_balanced ON ledger_entries')
    op.execute(_PG_LEGS_TRIGGER.format(function='ledger_check_new_legs'))
    op.execute('CREATE TRIGGER accounts_append_only BEFORE UPDATE OR DELETE ON accounts '
               'FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()')
    op.execute('CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts '
               'FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        for trigger in ('accounts_no_update', 'accounts_no_delete',
                        'ledger_entries_known_account', 'ledger_transactions_balanced'):
            op.execute(f'DROP TRIGGER {trigger}')
        with op.batch_alter_table('ledger_entries', recreate='always') as batch_op:
            batch_op.create_foreign_key(_ACCOUNT_FK, 'accounts', ['account_id'], ['id'])
            batch_op.drop_constraint(_HEADER_FK, type_='foreignkey')
            batch_op.create_foreign_key(_HEADER_FK, 'ledger_transactions', ['transaction_id'],
                                        ['id'], deferrable=True, initially='DEFERRED')
        for trigger in (*_sqlite_append_only('ledger_entries'), _SQLITE_LEGS_FIRST,
                        _SQLITE_BALANCED):
            op.execute(trigger)
        return
    op.execute('DROP TRIGGER accounts_no_truncate ON accounts')
    op.execute('DROP TRIGGER accounts_append_only ON accounts')
    op.execute('DROP TRIGGER ledger_entries_balanced ON ledger_entries')
    op.execute(_PG_LEGS_TRIGGER.format(function='ledger_new_legs_balance'))
    op.execute('DROP FUNCTION ledger_check_new_legs()')
    op.execute(sa.text(f'ALTER TABLE ledger_entries ADD CONSTRAINT {_ACCOUNT_FK} '
                       'FOREIGN KEY (account_id) REFERENCES accounts (id)'))
