"""Refunds remember the request's Idempotency-Key when it names no merchant refund number.

The gateway frees an Idempotency-Key whose request got a 5xx (so a retry runs at once); when the cashier had
committed the refund before it died, the retry must find that refund instead of making a second one.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE refunds ADD COLUMN request_key VARCHAR(255)")
    op.execute("ALTER TABLE refunds ADD CONSTRAINT uq_refunds_request_key UNIQUE (merchant_id, request_key)")


def downgrade() -> None:
    op.execute("ALTER TABLE refunds DROP CONSTRAINT uq_refunds_request_key")
    op.execute("ALTER TABLE refunds DROP COLUMN request_key")
