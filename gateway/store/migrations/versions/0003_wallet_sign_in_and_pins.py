"""My Wallet sign-in links (one-time, hashed) and payment PINs (argon2id hash, wrong-try counter).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wallet_sign_in_links",
        sa.Column("link_id", sa.Text, primary_key=True),
        sa.Column("secret_hash", sa.LargeBinary, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("platform_id", sa.Text, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_wallet_sign_in_links_expires_at", "wallet_sign_in_links", ["expires_at"])
    op.create_table(
        "payment_pins",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("platform_id", sa.Text, nullable=False),
        sa.Column("pin_hash", sa.Text, nullable=False),
        sa.Column("failed_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("failed_count >= 0", name="payment_pins_failed_count_nonnegative"),
    )


def downgrade() -> None:
    op.drop_table("payment_pins")
    op.drop_index("ix_wallet_sign_in_links_expires_at", table_name="wallet_sign_in_links")
    op.drop_table("wallet_sign_in_links")
