"""Hosted checkout sessions (`POST /v1/checkout/sessions`, the page `/checkout/{token}`).

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
        "checkout_sessions",
        sa.Column("id", sa.String(41), primary_key=True),
        sa.Column("merchant_id", sa.String(64), nullable=False),
        sa.Column("merchant_order_no", sa.String(64), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("merchant_name", sa.Text, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("line_items", JSONB, nullable=False),
        sa.Column("allowed_methods", JSONB),
        sa.Column("return_url", sa.Text, nullable=False),
        sa.Column("cancel_url", sa.Text),
        sa.Column("locale", sa.String(8)),
        sa.Column("wallet_holder_id", sa.String(64)),
        sa.Column("metadata", JSONB, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payment_seq", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("payment_id", sa.String(41)),
        sa.Column("payment_method", sa.String(32)),
        sa.Column("payment_scene", sa.String(16)),
        sa.Column("payment_request_id", sa.String(64)),
        sa.Column("payment_claimed_at", sa.DateTime(timezone=True)),
        sa.Column("paid_payment_id", sa.String(41)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("expired_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("merchant_id", "merchant_order_no", name="uq_checkout_sessions_merchant_order"),
        sa.UniqueConstraint("token_sha256", name="uq_checkout_sessions_token"),
        sa.CheckConstraint("amount_minor > 0", name="ck_checkout_sessions_amount_positive"),
    )
    op.create_index(
        "ix_checkout_sessions_open_expiry",
        "checkout_sessions",
        ["expires_at"],
        postgresql_where=sa.text("status = 'open'"),
    )


def downgrade() -> None:
    op.drop_table("checkout_sessions")
