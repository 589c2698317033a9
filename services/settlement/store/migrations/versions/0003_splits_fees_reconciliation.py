"""Receivers, split rules, fee rates, payment/refund records, split executions, reconciliation.

Frozen DDL (rendered once from store/tables.py at the time of writing): later changes to tables.py need
a new migration, never an edit here.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATEMENTS = (
    """CREATE TABLE receivers (
    receiver_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    holder_id TEXT NOT NULL,
    name TEXT DEFAULT '' NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (receiver_id)
)""",
    """CREATE TABLE split_rules (
    rule_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    business_line TEXT DEFAULT '' NOT NULL,
    shares JSONB NOT NULL,
    remainder_receiver_id TEXT NOT NULL,
    version BIGINT DEFAULT '1' NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (rule_id),
    CONSTRAINT split_rules_merchant_line UNIQUE (merchant_id, business_line)
)""",
    """CREATE TABLE merchant_fee_rates (
    merchant_id TEXT NOT NULL,
    platform_fee_rate_bps INTEGER NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (merchant_id)
)""",
    """CREATE TABLE payment_records (
    payment_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    merchant_order_no TEXT,
    business_line TEXT DEFAULT '' NOT NULL,
    channel TEXT,
    out_trade_no TEXT,
    channel_trade_no TEXT,
    status TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    channel_fee_minor BIGINT,
    channel_fee_rate_bps INTEGER,
    platform_fee_rate_bps INTEGER,
    platform_fee_minor BIGINT,
    margin_minor BIGINT,
    refunded_minor BIGINT DEFAULT '0' NOT NULL,
    bill_date DATE,
    succeeded_at TIMESTAMP WITH TIME ZONE,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (payment_id)
)""",
    """CREATE INDEX payment_records_merchant ON payment_records (merchant_id, payment_id)""",
    """CREATE INDEX payment_records_out_trade_no ON payment_records (out_trade_no)""",
    """CREATE INDEX payment_records_bill ON payment_records (channel, bill_date)""",
    """CREATE TABLE refund_records (
    refund_id TEXT NOT NULL,
    payment_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    channel TEXT,
    channel_refund_no TEXT,
    status TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    bill_date DATE,
    succeeded_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (refund_id)
)""",
    """CREATE INDEX ix_refund_records_payment_id ON refund_records (payment_id)""",
    """CREATE INDEX refund_records_bill ON refund_records (channel, bill_date)""",
    """CREATE TABLE split_executions (
    split_id TEXT NOT NULL,
    source_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    payment_id TEXT NOT NULL,
    refund_id TEXT,
    merchant_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    base_minor BIGINT NOT NULL,
    allocations JSONB NOT NULL,
    remainder_receiver_id TEXT NOT NULL,
    status TEXT NOT NULL,
    ledger_transfer_id TEXT,
    attempt_count INTEGER DEFAULT '0' NOT NULL,
    last_error TEXT,
    next_attempt_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    posted_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (split_id),
    UNIQUE (source_key)
)""",
    """CREATE INDEX split_executions_due ON split_executions (status, next_attempt_at)""",
    """CREATE INDEX ix_split_executions_payment_id ON split_executions (payment_id)""",
    """CREATE TABLE reconciliation_runs (
    run_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    bill_date DATE NOT NULL,
    status TEXT NOT NULL,
    counts JSONB DEFAULT '{}' NOT NULL,
    bill_lines BIGINT DEFAULT '0' NOT NULL,
    error TEXT,
    started_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    finished_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (run_id)
)""",
    """CREATE INDEX reconciliation_runs_day ON reconciliation_runs (channel, bill_date)""",
    """CREATE TABLE reconciliation_items (
    item_id BIGINT GENERATED ALWAYS AS IDENTITY,
    run_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    resolution TEXT NOT NULL,
    resolution_status TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    payment_id TEXT,
    refund_id TEXT,
    merchant_order_no TEXT,
    channel_trade_no TEXT,
    juhe_amount_minor BIGINT,
    channel_amount_minor BIGINT,
    juhe_fee_minor BIGINT,
    channel_fee_minor BIGINT,
    juhe_status TEXT,
    channel_status TEXT,
    detail TEXT DEFAULT '' NOT NULL,
    PRIMARY KEY (item_id)
)""",
    """CREATE INDEX ix_reconciliation_items_merchant_order_no ON reconciliation_items (merchant_order_no)""",
    """CREATE INDEX ix_reconciliation_items_run_id ON reconciliation_items (run_id)""",
    """CREATE INDEX ix_reconciliation_items_payment_id ON reconciliation_items (payment_id)""",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
