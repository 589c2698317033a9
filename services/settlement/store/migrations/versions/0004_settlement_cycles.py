"""Settlement cycles: merchant cycles, business-day calendar, settlement entries and batches.

Frozen DDL (rendered once from store/tables.py at the time of writing): later changes need a new migration.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STATEMENTS = (
    """ALTER TABLE payment_records ADD COLUMN settle_date DATE""",
    """CREATE TABLE merchant_cycles (
    holder_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    days INTEGER DEFAULT '1' NOT NULL,
    weekday INTEGER DEFAULT '0' NOT NULL,
    cutoff TIME WITHOUT TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (holder_id)
)""",
    """CREATE TABLE calendar_days (
    day DATE NOT NULL,
    business_day BOOLEAN NOT NULL,
    name TEXT DEFAULT '' NOT NULL,
    PRIMARY KEY (day)
)""",
    """CREATE TABLE settlement_entries (
    entry_id BIGINT GENERATED ALWAYS AS IDENTITY,
    source_key TEXT NOT NULL,
    holder_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    due_date DATE NOT NULL,
    kind TEXT NOT NULL,
    payment_id TEXT NOT NULL,
    refund_id TEXT,
    batch_id TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (entry_id),
    UNIQUE (source_key)
)""",
    """CREATE INDEX settlement_entries_open ON settlement_entries (holder_id, currency, due_date)
    WHERE batch_id IS NULL""",
    """CREATE INDEX settlement_entries_batch ON settlement_entries (batch_id)""",
    """CREATE TABLE settlement_batches (
    batch_id TEXT NOT NULL,
    holder_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    cycle_date DATE NOT NULL,
    amount_minor BIGINT NOT NULL,
    entry_count INTEGER NOT NULL,
    status TEXT NOT NULL,
    ledger_transfer_id TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    posted_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (batch_id),
    CONSTRAINT settlement_batches_one_per_day UNIQUE (holder_id, currency, cycle_date)
)""",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
