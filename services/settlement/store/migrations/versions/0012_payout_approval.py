"""Payout approval (maker-checker): a payout at or above the platform's threshold waits in `pending_approval`
until a platform operator approves it (→ `pending`, then paid as before) or rejects it (→ `rejected`, nothing
moved). Who decided, when and why are kept on the payout. Existing rows were never held.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

STATEMENTS = (
    "ALTER TABLE payouts ADD COLUMN decided_by TEXT",
    "ALTER TABLE payouts ADD COLUMN decided_at TIMESTAMPTZ",
    "ALTER TABLE payouts ADD COLUMN decision_reason TEXT",
    # The operators' queue: the held payouts, oldest first.
    "CREATE INDEX payouts_awaiting_approval ON payouts (created_at) WHERE status = 'pending_approval'",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
