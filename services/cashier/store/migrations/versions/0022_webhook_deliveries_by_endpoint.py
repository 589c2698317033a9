"""An endpoint's webhook deliveries newest first (`GET /v1/webhook-endpoints/{id}/deliveries`, the merchant console's
endpoint page): an index on (endpoint_id, seq) for the deliveries that go to an endpoint, so a page reads its rows
straight from the index however many deliveries the platform has made.

Revision ID: 0022
Revises: 0021
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, seq) "
        "WHERE endpoint_id IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_webhook_deliveries_endpoint")
