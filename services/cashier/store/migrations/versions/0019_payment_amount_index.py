"""The merchant console's search by amount (`GET /v1/payments?amount_minor=` or `amount_minor_gte/lte`): an index
on (merchant_id, amount_minor, id), so an exact amount reads its matches newest first straight from the index and a
range reads only the payments in it, for a merchant with 100,000 payments as for one with ten.

Revision ID: 0019
Revises: 0018
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_payments_merchant_amount ON payments (merchant_id, amount_minor, id)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_payments_merchant_amount")
