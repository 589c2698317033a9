"""Test and live (docs/test-mode.md): checkout sessions and payment links carry `livemode`, the mode of the payments
made from them (a session opened from a link takes the link's).

Those made before modes existed are live, like the API keys that made them (gateway migration 0007), unless their
merchant has no live channel configuration (migration 0015): such a merchant could only ever have paid at sandboxes.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

TABLES = ("checkout_sessions", "payment_links")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("livemode", sa.Boolean, nullable=False, server_default=sa.true()))
        op.execute(
            f"UPDATE {table} t SET livemode = false WHERE NOT EXISTS "
            "(SELECT 1 FROM merchant_channels mc WHERE mc.merchant_id = t.merchant_id AND mc.mode = 'live')"
        )
        op.alter_column(table, "livemode", server_default=None)


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "livemode")
