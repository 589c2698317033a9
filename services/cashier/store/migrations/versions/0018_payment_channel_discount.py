"""A payment's channel coupons (WeChat `promotion_detail`, Alipay `voucher_detail_list`): `channel_discount`.

What the channel reported when the payment succeeded: the total discount, who funded it (`channel_minor`,
`merchant_minor`) and what the channel does not settle (`unsettled_minor`), with the coupons. Stored so the
payment view shows it and every refund event carries it (`payment_channel_discount`): the ledger and settlement
give the unsettled part back per refund (docs/ledger.md §3.15). NULL without channel coupons.

Revision ID: 0018
Revises: 0017
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE payments ADD COLUMN channel_discount JSONB")


def downgrade() -> None:
    op.execute("ALTER TABLE payments DROP COLUMN channel_discount")
