"""Channel profit-sharing orders (docs/contracts.md §2): one row per (payment, order number) settlement asked for.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE profit_sharing_orders (
            id VARCHAR(41) NOT NULL,
            payment_id VARCHAR(41) NOT NULL,
            merchant_id VARCHAR(64) NOT NULL,
            order_no VARCHAR(64) NOT NULL,
            request_sha256 VARCHAR(64) NOT NULL,
            channel VARCHAR(32) NOT NULL,
            channel_trade_no VARCHAR(64) NOT NULL,
            out_order_no VARCHAR(64) NOT NULL,
            finish BOOLEAN NOT NULL,
            status VARCHAR(16) NOT NULL,
            receivers JSONB NOT NULL,
            channel_order_id VARCHAR(64),
            submitted_at TIMESTAMP WITH TIME ZONE,
            failure_code VARCHAR(64),
            failure_message TEXT,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            PRIMARY KEY (id),
            FOREIGN KEY(payment_id) REFERENCES payments (id),
            CONSTRAINT uq_profit_sharing_orders_payment_order UNIQUE (payment_id, order_no),
            CONSTRAINT uq_profit_sharing_orders_out_order_no UNIQUE (out_order_no)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE profit_sharing_orders")
