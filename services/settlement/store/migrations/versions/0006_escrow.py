"""Escrow (担保交易) splits: rule mode and auto-confirm delay, hold state on split executions.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATEMENTS = (
    "ALTER TABLE split_rules ADD COLUMN mode TEXT DEFAULT 'realtime' NOT NULL",
    "ALTER TABLE split_rules ADD COLUMN auto_confirm_seconds INTEGER",
    "ALTER TABLE split_executions ADD COLUMN mode TEXT DEFAULT 'realtime' NOT NULL",
    "ALTER TABLE split_executions ADD COLUMN confirm_deadline TIMESTAMP WITH TIME ZONE",
    "ALTER TABLE split_executions ADD COLUMN confirmed_at TIMESTAMP WITH TIME ZONE",
    "ALTER TABLE split_executions ADD COLUMN confirmed_by TEXT",
    "ALTER TABLE split_executions ADD COLUMN base_offset_minor BIGINT DEFAULT '0' NOT NULL",
    "CREATE INDEX split_executions_deadline ON split_executions (confirm_deadline) WHERE status = 'held'",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
