"""Top-up bonus expiry: the sweep finds granted bonuses past `expires_at` by this partial index.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX topup_bonus_grants_expiry ON topup_bonus_grants (expires_at) WHERE status = 'granted'")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
