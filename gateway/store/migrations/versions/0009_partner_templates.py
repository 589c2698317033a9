"""The platform's service-provider (服务商) channel configurations for partner-mode onboarding: stored once per
channel and mode (a sandbox one for test keys, the real one for live keys), sealed with AES-256-GCM like the
merchants' secrets, so an onboarding in partner mode gives only the merchant's sub-merchant id.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "partner_templates",
        sa.Column("platform_id", sa.Text, primary_key=True),
        sa.Column("channel", sa.Text, primary_key=True),
        sa.Column("mode", sa.Text, primary_key=True),
        sa.Column("config_sealed", sa.LargeBinary, nullable=False),
        sa.Column("config_hash", sa.LargeBinary, nullable=False),
        sa.Column("public", JSONB, nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("channel IN ('wechatpay', 'alipay')", name="partner_templates_channel_known"),
        sa.CheckConstraint("mode IN ('test', 'live')", name="partner_templates_mode_known"),
    )


def downgrade() -> None:
    op.drop_table("partner_templates")
