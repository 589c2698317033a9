"""A merchant's pinned API version (`Juhe-Version` default; null: the latest).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("merchants", sa.Column("api_version", sa.Text))


def downgrade() -> None:
    op.drop_column("merchants", "api_version")
