"""Test and live never mix (docs/test-mode.md): every record, entry, split, batch and payout says its
mode (`livemode`), taken from the cashier event (or the merchant key) it comes from, and a settlement cycle builds
one batch per holder, currency, day **and mode**, so a test payment is never settled or paid out with live money.
The mirror of ledger accounts records their book. Everything that exists is live: before this, test payments
were settled like live ones, and the events of older cashiers carry no mode (they were live).

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TABLES = (
    "ledger_accounts",
    "payment_records",
    "refund_records",
    "split_executions",
    "settlement_entries",
    "settlement_batches",
    "payouts",
    "reconciliation_runs",
)

STATEMENTS = (
    *(f"ALTER TABLE {table} ADD COLUMN livemode BOOLEAN NOT NULL DEFAULT true" for table in TABLES),
    "ALTER TABLE settlement_batches DROP CONSTRAINT settlement_batches_one_per_day",
    "ALTER TABLE settlement_batches ADD CONSTRAINT settlement_batches_one_per_day"
    " UNIQUE (holder_id, currency, cycle_date, livemode)",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
