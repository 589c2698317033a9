"""Re-drive of half-created payments: the candidates chosen at creation, and an index of `created` attempts.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The ordered candidates (channel, route, fee) the create flow chose, so a re-drive after a crash fails
    # over exactly as the create flow would have. NULL on older payments: a re-drive then has no failover.
    op.execute("ALTER TABLE payments ADD COLUMN candidates JSONB")
    # A `created` attempt's next_poll_at is its driver's lease (re-driven once it passes).
    op.execute("CREATE INDEX ix_attempts_redrive ON attempts (next_poll_at) WHERE status = 'created'")


def downgrade() -> None:
    op.execute("DROP INDEX ix_attempts_redrive")
    op.execute("ALTER TABLE payments DROP COLUMN candidates")
