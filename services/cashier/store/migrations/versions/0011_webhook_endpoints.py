"""Merchant webhook endpoints (several per merchant, event types, rotatable secrets), the merchant event log
behind `GET /v1/events`, and the endpoint a delivery goes to.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE webhook_endpoints (
            id VARCHAR(41) PRIMARY KEY,
            merchant_id VARCHAR(64) NOT NULL,
            url TEXT NOT NULL,
            description TEXT,
            enabled_events JSONB NOT NULL,
            enabled BOOLEAN NOT NULL DEFAULT true,
            secret TEXT NOT NULL,
            previous_secret TEXT,
            previous_secret_expires_at TIMESTAMPTZ,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX ix_webhook_endpoints_merchant ON webhook_endpoints (merchant_id, created_at)")
    op.execute("CREATE SEQUENCE merchant_event_seq")
    op.execute(
        """
        CREATE TABLE merchant_events (
            id VARCHAR(41) PRIMARY KEY,
            seq BIGINT NOT NULL UNIQUE,
            merchant_id VARCHAR(64) NOT NULL,
            type VARCHAR(64) NOT NULL,
            payment_id VARCHAR(41) NOT NULL,
            payload JSONB NOT NULL,
            created_at TIMESTAMPTZ NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX ix_merchant_events_merchant ON merchant_events (merchant_id, seq)")
    op.execute("CREATE INDEX ix_merchant_events_merchant_type ON merchant_events (merchant_id, type, seq)")
    op.execute("ALTER TABLE webhook_deliveries ADD COLUMN endpoint_id VARCHAR(41)")


def downgrade() -> None:
    op.execute("ALTER TABLE webhook_deliveries DROP COLUMN endpoint_id")
    op.execute("DROP TABLE merchant_events")
    op.execute("DROP SEQUENCE merchant_event_seq")
    op.execute("DROP TABLE webhook_endpoints")
