"""Outbox, inbox and dead-letter tables of the migration database.

Revision ID: 0001
Revises:
"""

from libs.common.migrations import create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables()


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
