"""One-call merchant onboarding (its steps, driven to completion by the worker) and merchant suspension.

`merchants.suspended_at` is read by the per-request guard statement (`store/guards.py`), so a suspension is
refused on every replica at once. `merchant_status_changes` is the audit of suspensions and resumptions.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("merchants", sa.Column("suspended_at", sa.DateTime(timezone=True)))
    op.add_column("merchants", sa.Column("suspension_reason", sa.Text))
    op.create_table(
        "merchant_status_changes",
        sa.Column("change_id", sa.Text, primary_key=True),
        sa.Column("merchant_id", sa.Text, nullable=False),
        sa.Column("platform_id", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("action IN ('suspended', 'resumed')", name="merchant_status_changes_action_known"),
    )
    op.create_index("merchant_status_changes_merchant", "merchant_status_changes", ["merchant_id", "change_id"])
    op.create_table(
        "merchant_onboardings",
        sa.Column("onboarding_id", sa.Text, primary_key=True),
        sa.Column("platform_id", sa.Text, nullable=False),
        sa.Column("merchant_id", sa.Text, nullable=False, unique=True),
        sa.Column("idempotency_key", sa.Text, nullable=False),
        sa.Column("request_hash", sa.LargeBinary, nullable=False),
        sa.Column("request_sealed", sa.LargeBinary, nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("steps", JSONB, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("status IN ('processing', 'active', 'rejected')", name="merchant_onboardings_status_known"),
        sa.UniqueConstraint("platform_id", "idempotency_key", name="merchant_onboardings_idempotency_key"),
    )
    op.create_index(
        "merchant_onboardings_due",
        "merchant_onboardings",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'processing'"),
    )


def downgrade() -> None:
    op.drop_table("merchant_onboardings")
    op.drop_table("merchant_status_changes")
    op.drop_column("merchants", "suspension_reason")
    op.drop_column("merchants", "suspended_at")
