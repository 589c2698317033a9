"""Channel coupon mirroring: a stock's channel, the channel stocks (creator, the fixed create request, the channel's
id), the coupons sent at the channel and every verified channel callback (flows/channel_stocks.py,
flows/channel_coupons.py).

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

STATEMENTS = (
    "ALTER TABLE coupon_stocks ADD COLUMN channel TEXT",
    """CREATE TABLE channel_stocks (
    stock_id TEXT NOT NULL REFERENCES coupon_stocks (stock_id),
    program TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    out_request_no TEXT NOT NULL UNIQUE,
    request JSONB NOT NULL,
    channel_stock_id TEXT,
    channel_status TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (stock_id),
    CONSTRAINT channel_stocks_channel_id_key UNIQUE (program, channel_stock_id)
)""",
    """CREATE TABLE channel_coupons (
    coupon_id TEXT NOT NULL REFERENCES coupons (coupon_id),
    stock_id TEXT NOT NULL,
    program TEXT NOT NULL,
    channel_user TEXT NOT NULL,
    out_request_no TEXT NOT NULL UNIQUE,
    send_status TEXT NOT NULL,
    failure_code TEXT,
    channel_coupon_id TEXT,
    used_at TIMESTAMP WITH TIME ZONE,
    transaction_id TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (coupon_id),
    CONSTRAINT channel_coupons_channel_id_key UNIQUE (program, channel_coupon_id)
)""",
    "CREATE INDEX channel_coupons_stock ON channel_coupons (stock_id, send_status)",
    "CREATE INDEX channel_coupons_pending ON channel_coupons (created_at) WHERE send_status = 'pending'",
    """CREATE TABLE channel_coupon_events (
    program TEXT NOT NULL,
    event_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    channel_stock_id TEXT NOT NULL,
    channel_coupon_id TEXT,
    occurred_at TIMESTAMP WITH TIME ZONE,
    transaction_id TEXT,
    detail JSONB NOT NULL,
    applied_at TIMESTAMP WITH TIME ZONE,
    received_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (program, event_id)
)""",
    "CREATE INDEX channel_coupon_events_unapplied ON channel_coupon_events (program, channel_coupon_id) "
    "WHERE applied_at IS NULL",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
