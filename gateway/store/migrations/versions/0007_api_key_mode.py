"""API keys carry a mode, test or live (docs/test-mode.md).

Keys made before modes existed become `live`: they were the merchants' production keys and their payments
went to whatever channels were configured, so marking them `test` would cut live traffic off at once. A key
inserted later without a mode is `test` (the server default), the side that cannot move money.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("mode", sa.Text, nullable=False, server_default="live"))
    op.alter_column("api_keys", "mode", server_default="test")
    op.create_check_constraint("api_keys_mode_known", "api_keys", "mode IN ('test', 'live')")


def downgrade() -> None:
    op.drop_constraint("api_keys_mode_known", "api_keys", type_="check")
    op.drop_column("api_keys", "mode")
