"""Mirror of ledger accounts, fed by `account.opened`.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("account_id", sa.Text, primary_key=True),
        sa.Column("holder_id", sa.Text, nullable=False, index=True),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_event_id", sa.Text, nullable=False),
        sa.Column("applied_count", sa.BigInteger, nullable=False, server_default="1"),
        sa.Column("mirrored_seq", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("mirrored_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
