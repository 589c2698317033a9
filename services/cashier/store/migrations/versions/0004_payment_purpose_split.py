"""Payments carry their purpose (payment | wallet_topup, with the credited wallet holder), the merchant's
explicit split and whether the channel freezes funds for profit sharing (docs/contracts.md §1, split check).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE payments ADD COLUMN purpose VARCHAR(16) DEFAULT 'payment' NOT NULL")
    op.execute("ALTER TABLE payments ADD COLUMN wallet_holder_id VARCHAR(64)")
    op.execute("ALTER TABLE payments ADD COLUMN split JSONB")
    op.execute("ALTER TABLE payments ADD COLUMN profit_sharing BOOLEAN DEFAULT false NOT NULL")
    op.execute(
        "ALTER TABLE payments ADD CONSTRAINT ck_payments_topup_holder "
        "CHECK ((purpose = 'wallet_topup') = (wallet_holder_id IS NOT NULL))"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE payments DROP CONSTRAINT ck_payments_topup_holder")
    for column in ("profit_sharing", "split", "wallet_holder_id", "purpose"):
        op.execute(f"ALTER TABLE payments DROP COLUMN {column}")
