"""Late successes of checkout payments, found by their session: a partial index on the payments a channel
reported paid after Juhe had closed them, keyed by `metadata->>'checkout_session_id'` (rare rows, so the
settling loop's look-ups for a session's late success and for late successes left to refund stay small).

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE INDEX ix_payments_checkout_late_success ON payments ((metadata->>'checkout_session_id'))
        WHERE late_success AND status = 'succeeded' AND metadata ? 'checkout_session_id'
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_payments_checkout_late_success")
