"""The unique index on (merchant_id, merchant_order_no) made again, so it is the newest index of `payments`.

The create's read looks a payment up by `merchant_id = $1 AND merchant_order_no = $2`. Before `payments` has
statistics (a fresh database, until its first autoanalyze: the launcher's, a test's, a new deployment's), every
index leading with `merchant_id` is estimated at one row, the same cost as the unique index, and PostgreSQL keeps
the first of equal-cost paths, which is the newest index's: `ix_payments_merchant_amount` (0019). Its scan reads
every payment of the merchant, and the statement's cached generic plan, made on the nearly empty table, kept it
until the first autoanalyze (up to a minute under load): 216 buffers per create at 220 payments, growing with
every payment (docs/performance.md, "Seventh pass: database"). Made last, the unique index wins the tie; with
statistics it wins on cost anyway. `services/cashier/tests/integration/test_order_lookup_plan.py` checks the plan.

Revision ID: 0025
Revises: 0024
"""

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE UNIQUE INDEX uq_payments_merchant_order_0025 ON payments (merchant_id, merchant_order_no)")
    # The constraint keeps its name (the create's ON CONFLICT names it) and takes over the new index, renamed to it.
    op.execute(
        "ALTER TABLE payments DROP CONSTRAINT uq_payments_merchant_order, "
        "ADD CONSTRAINT uq_payments_merchant_order UNIQUE USING INDEX uq_payments_merchant_order_0025"
    )


def downgrade() -> None:
    """Nothing to undo: the same constraint on the same columns."""
