"""A wallet payment's cash and top-up bonus parts: `payments.wallet_split` and `refunds.wallet_split`.

What the payer paid from the cash balance and from a top-up bonus (the wallet connector reads it from the
ledger hold, docs/ledger.md §3.2): `{cash_minor, bonus_minor}` on the payment; a refund's
`{cash_minor, bonus_minor, platform_minor}` says where it went back (the cash, the bonus, or the platform for
the part of a bonus that ended since). Stored so the API views and the events (`payment.succeeded`
`wallet_split`, `refund.*` `wallet_split` and `payment_wallet_split`) say it. NULL for other channels.

Revision ID: 0021
Revises: 0020
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE payments ADD COLUMN wallet_split JSONB")
    op.execute("ALTER TABLE refunds ADD COLUMN wallet_split JSONB")


def downgrade() -> None:
    op.execute("ALTER TABLE refunds DROP COLUMN wallet_split")
    op.execute("ALTER TABLE payments DROP COLUMN wallet_split")
