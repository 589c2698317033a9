"""Stored idempotent responses are sealed (AES-256-GCM, the credentials key ring): a replayed answer may carry a
secret (a webhook endpoint's signing secret), which the gateway does not keep in plain text. Records written
before this revision stay plain (`response_sealed` false) and expire within `idempotency_ttl_seconds`.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "idempotency_records",
        sa.Column("response_sealed", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("idempotency_records", "response_sealed")
