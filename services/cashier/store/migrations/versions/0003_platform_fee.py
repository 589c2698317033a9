"""Payments carry the platform fee fixed at creation (docs/ledger.md §3.1 / §3.2 merchant line).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE payments ADD COLUMN platform_fee_minor BIGINT DEFAULT 0 NOT NULL")


def downgrade() -> None:
    op.execute("ALTER TABLE payments DROP COLUMN platform_fee_minor")
