"""Payments, attempts, refunds, merchant channel configs, webhook deliveries.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATEMENTS = (
    """
    CREATE TABLE merchants (
        merchant_id VARCHAR(64) NOT NULL,
        webhook_secret TEXT NOT NULL,
        notify_url TEXT,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (merchant_id)
    )
    """,
    """
    CREATE TABLE merchant_channels (
        merchant_id VARCHAR(64) NOT NULL,
        channel VARCHAR(32) NOT NULL,
        priority INTEGER DEFAULT 100 NOT NULL,
        enabled BOOLEAN DEFAULT true NOT NULL,
        config JSONB NOT NULL,
        version INTEGER DEFAULT 1 NOT NULL,
        updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (merchant_id, channel),
        FOREIGN KEY(merchant_id) REFERENCES merchants (merchant_id)
    )
    """,
    """
    CREATE TABLE payments (
        id VARCHAR(41) NOT NULL,
        merchant_id VARCHAR(64) NOT NULL,
        merchant_order_no VARCHAR(64) NOT NULL,
        request_sha256 VARCHAR(64) NOT NULL,
        amount_minor BIGINT NOT NULL,
        currency VARCHAR(3) NOT NULL,
        description TEXT NOT NULL,
        scene VARCHAR(16) NOT NULL,
        payer JSONB DEFAULT '{}'::jsonb NOT NULL,
        notify_url TEXT,
        return_url TEXT,
        metadata JSONB DEFAULT '{}'::jsonb NOT NULL,
        status VARCHAR(16) NOT NULL,
        current_attempt_id VARCHAR(41),
        channel VARCHAR(32),
        route_id VARCHAR(64),
        fee_minor BIGINT,
        fee_rate_bps INTEGER,
        channel_trade_no VARCHAR(64),
        payer_action JSONB,
        expire_at TIMESTAMP WITH TIME ZONE NOT NULL,
        succeeded_at TIMESTAMP WITH TIME ZONE,
        closed_at TIMESTAMP WITH TIME ZONE,
        failed_at TIMESTAMP WITH TIME ZONE,
        failure_code VARCHAR(64),
        failure_message TEXT,
        late_success BOOLEAN DEFAULT false NOT NULL,
        refund_reserved_minor BIGINT DEFAULT 0 NOT NULL,
        refunded_minor BIGINT DEFAULT 0 NOT NULL,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (id),
        CONSTRAINT uq_payments_merchant_order UNIQUE (merchant_id, merchant_order_no)
    )
    """,
    """
    CREATE INDEX ix_payments_merchant_created ON payments (merchant_id, id)
    """,
    """
    CREATE INDEX ix_payments_open_expiry ON payments (expire_at) WHERE status IN ('created', 'processing')
    """,
    """
    CREATE TABLE attempts (
        id VARCHAR(41) NOT NULL,
        payment_id VARCHAR(41) NOT NULL,
        merchant_id VARCHAR(64) NOT NULL,
        seq INTEGER NOT NULL,
        channel VARCHAR(32) NOT NULL,
        route_id VARCHAR(64),
        fee_minor BIGINT,
        fee_rate_bps INTEGER,
        out_trade_no VARCHAR(64) NOT NULL,
        status VARCHAR(16) NOT NULL,
        channel_trade_no VARCHAR(64),
        payer_action JSONB,
        failure_code VARCHAR(64),
        failure_message TEXT,
        retryable BOOLEAN,
        duplicate_success BOOLEAN DEFAULT false NOT NULL,
        latency_ms INTEGER,
        poll_count INTEGER DEFAULT 0 NOT NULL,
        next_poll_at TIMESTAMP WITH TIME ZONE,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        finished_at TIMESTAMP WITH TIME ZONE,
        PRIMARY KEY (id),
        CONSTRAINT uq_attempts_payment_seq UNIQUE (payment_id, seq),
        FOREIGN KEY(payment_id) REFERENCES payments (id),
        UNIQUE (out_trade_no)
    )
    """,
    """
    CREATE INDEX ix_attempts_poll ON attempts (next_poll_at) WHERE status = 'processing'
    """,
    """
    CREATE TABLE refunds (
        id VARCHAR(41) NOT NULL,
        payment_id VARCHAR(41) NOT NULL,
        attempt_id VARCHAR(41) NOT NULL,
        merchant_id VARCHAR(64) NOT NULL,
        merchant_refund_no VARCHAR(64),
        request_sha256 VARCHAR(64) NOT NULL,
        channel VARCHAR(32) NOT NULL,
        amount_minor BIGINT NOT NULL,
        currency VARCHAR(3) NOT NULL,
        reason TEXT,
        status VARCHAR(16) NOT NULL,
        channel_refund_no VARCHAR(64),
        failure_code VARCHAR(64),
        failure_message TEXT,
        poll_count INTEGER DEFAULT 0 NOT NULL,
        next_poll_at TIMESTAMP WITH TIME ZONE,
        succeeded_at TIMESTAMP WITH TIME ZONE,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (id),
        CONSTRAINT uq_refunds_merchant_refund UNIQUE (merchant_id, merchant_refund_no),
        FOREIGN KEY(payment_id) REFERENCES payments (id)
    )
    """,
    """
    CREATE INDEX ix_refunds_payment ON refunds (payment_id, id)
    """,
    """
    CREATE INDEX ix_refunds_poll ON refunds (next_poll_at) WHERE status = 'pending'
    """,
    """
    CREATE TABLE webhook_deliveries (
        id VARCHAR(41) NOT NULL,
        seq BIGINT NOT NULL,
        merchant_id VARCHAR(64) NOT NULL,
        payment_id VARCHAR(41) NOT NULL,
        event_id VARCHAR(41) NOT NULL,
        event_type VARCHAR(64) NOT NULL,
        url TEXT NOT NULL,
        body TEXT NOT NULL,
        status VARCHAR(16) NOT NULL,
        attempt_count INTEGER DEFAULT 0 NOT NULL,
        next_attempt_at TIMESTAMP WITH TIME ZONE,
        last_status_code INTEGER,
        last_error TEXT,
        delivered_at TIMESTAMP WITH TIME ZONE,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (id),
        UNIQUE (seq)
    )
    """,
    """
    CREATE INDEX ix_webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending'
    """,
    """
    CREATE INDEX ix_webhook_deliveries_payment ON webhook_deliveries (payment_id, seq)
    """,
    """
    CREATE TABLE webhook_attempts (
        id BIGSERIAL NOT NULL,
        delivery_id VARCHAR(41) NOT NULL,
        attempt_no INTEGER NOT NULL,
        status_code INTEGER,
        error TEXT,
        duration_ms INTEGER NOT NULL,
        attempted_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (id),
        FOREIGN KEY(delivery_id) REFERENCES webhook_deliveries (id)
    )
    """,
    """
    CREATE INDEX ix_webhook_attempts_delivery ON webhook_attempts (delivery_id, id)
    """,
    """
    CREATE SEQUENCE webhook_delivery_seq
    """,
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
