"""Explicit splits and channel profit sharing on payments, receivers' channel accounts, wallet withdrawals
paid out by the bank, channel profit-sharing orders.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

STATEMENTS = (
    "ALTER TABLE receivers ADD COLUMN channel_accounts JSONB",
    "ALTER TABLE payment_records ADD COLUMN purpose TEXT DEFAULT 'payment' NOT NULL",
    "ALTER TABLE payment_records ADD COLUMN explicit_split JSONB",
    "ALTER TABLE payment_records ADD COLUMN profit_sharing BOOLEAN DEFAULT false NOT NULL",
    """CREATE TABLE withdrawals (
    operation_id TEXT NOT NULL,
    holder_id TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    fee_minor BIGINT DEFAULT '0' NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    account_no TEXT,
    account_name TEXT,
    submitted_at TIMESTAMP WITH TIME ZONE,
    bank_ref TEXT,
    bank_status TEXT,
    failure_code TEXT,
    ledger_outcome TEXT,
    attempt_count INTEGER DEFAULT '0' NOT NULL,
    last_error TEXT,
    next_attempt_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    finished_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (operation_id)
)""",
    "CREATE INDEX withdrawals_due ON withdrawals (status, next_attempt_at)",
    """CREATE TABLE profit_sharing_orders (
    order_no TEXT NOT NULL,
    payment_id TEXT NOT NULL,
    split_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    currency TEXT NOT NULL,
    receivers JSONB NOT NULL,
    status TEXT NOT NULL,
    channel_status TEXT,
    channel_order_id TEXT,
    result JSONB,
    ledger_transfer_id TEXT,
    attempt_count INTEGER DEFAULT '0' NOT NULL,
    last_error TEXT,
    next_attempt_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    finished_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (order_no),
    CONSTRAINT profit_sharing_orders_split UNIQUE (split_id)
)""",
    "CREATE INDEX profit_sharing_orders_due ON profit_sharing_orders (status, next_attempt_at)",
    "CREATE INDEX profit_sharing_orders_payment ON profit_sharing_orders (payment_id)",
    "CREATE INDEX payouts_holder ON payouts (holder_id, payout_id)",
    "CREATE INDEX settlement_batches_holder ON settlement_batches (holder_id, batch_id)",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
