"""Payments redeemed with a marketing coupon: the order amount, the discount and who funds it.

`amount_minor` stays what the channel is asked for (and refunds, bills, settlement and the ledger's cash lines
keep reading it as that); a discounted payment also records the order's own amount, the discount and the
coupon's redemption with its funding split. NULL / 0 on payments without a coupon.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE payments ADD COLUMN order_amount_minor BIGINT")
    op.execute("ALTER TABLE payments ADD COLUMN discount_minor BIGINT NOT NULL DEFAULT 0")
    op.execute("ALTER TABLE payments ADD COLUMN coupon JSONB")
    op.execute(
        "ALTER TABLE payments ADD CONSTRAINT ck_payments_discount CHECK ("
        "(coupon IS NULL AND discount_minor = 0 AND order_amount_minor IS NULL) OR "
        "(coupon IS NOT NULL AND discount_minor > 0 AND order_amount_minor = amount_minor + discount_minor))"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE payments DROP CONSTRAINT ck_payments_discount")
    op.execute("ALTER TABLE payments DROP COLUMN coupon")
    op.execute("ALTER TABLE payments DROP COLUMN discount_minor")
    op.execute("ALTER TABLE payments DROP COLUMN order_amount_minor")
