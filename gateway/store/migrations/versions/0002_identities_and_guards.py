"""Identities (platforms, merchants, users, API keys, user tokens) and the request guards (nonces,
idempotency records, rate-limit counters).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False, default: bool = False) -> sa.Column:
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=nullable, server_default=sa.func.now() if default else None
    )


def upgrade() -> None:
    op.create_table(
        "platforms",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        _ts("created_at", default=True),
    )
    op.create_table(
        "merchants",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("platform_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="active"),
        sa.Column("webhook_secret_sealed", sa.LargeBinary, nullable=False),
        _ts("created_at", default=True),
        sa.CheckConstraint("status IN ('active', 'disabled')", name="merchants_status_known"),
    )
    op.create_index("ix_merchants_platform_id", "merchants", ["platform_id"])
    op.create_table(
        "users",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("platform_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        _ts("created_at", default=True),
    )
    op.create_index("ix_users_platform_id", "users", ["platform_id"])
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.Text, primary_key=True),
        sa.Column("owner_kind", sa.Text, nullable=False),
        sa.Column("owner_id", sa.Text, nullable=False),
        sa.Column("platform_id", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.LargeBinary),
        sa.Column("secret_sealed", sa.LargeBinary),
        sa.Column("rsa_public_key_pem", sa.Text),
        sa.Column("status", sa.Text, nullable=False, server_default="active"),
        _ts("expires_at", nullable=True),
        _ts("revoked_at", nullable=True),
        sa.Column("replaced_by", sa.Text),
        _ts("created_at", default=True),
        sa.CheckConstraint("owner_kind IN ('merchant', 'platform')", name="api_keys_owner_kind_known"),
        sa.CheckConstraint("status IN ('active', 'revoked')", name="api_keys_status_known"),
        sa.CheckConstraint(
            "(owner_kind = 'merchant' AND secret_sealed IS NOT NULL) "
            "OR (owner_kind = 'platform' AND secret_hash IS NOT NULL)",
            name="api_keys_secret_present",
        ),
    )
    op.create_index("api_keys_owner", "api_keys", ["owner_kind", "owner_id"])
    op.create_table(
        "user_tokens",
        sa.Column("token_id", sa.Text, primary_key=True),
        sa.Column("secret_hash", sa.LargeBinary, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("platform_id", sa.Text, nullable=False),
        sa.Column("merchant_id", sa.Text),
        _ts("expires_at"),
        _ts("revoked_at", nullable=True),
        _ts("created_at", default=True),
    )
    op.create_index("ix_user_tokens_user_id", "user_tokens", ["user_id"])
    op.create_table(
        "request_nonces",
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("nonce", sa.Text, nullable=False),
        _ts("expires_at"),
        sa.PrimaryKeyConstraint("key_id", "nonce", name="request_nonces_pk"),
    )
    op.create_index("ix_request_nonces_expires_at", "request_nonces", ["expires_at"])
    op.create_table(
        "idempotency_records",
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("request_hash", sa.LargeBinary, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("lock_token", sa.Text),
        _ts("locked_until", nullable=True),
        sa.Column("response_status", sa.Integer),
        sa.Column("response_headers", JSONB),
        sa.Column("response_body", sa.LargeBinary),
        _ts("created_at", default=True),
        _ts("expires_at"),
        sa.PrimaryKeyConstraint("scope", "key", name="idempotency_records_pk"),
        sa.CheckConstraint("state IN ('in_progress', 'done')", name="idempotency_records_state_known"),
    )
    op.create_index("ix_idempotency_records_expires_at", "idempotency_records", ["expires_at"])
    op.create_table(
        "rate_limit_counters",
        sa.Column("bucket", sa.Text, nullable=False),
        sa.Column("window_start", sa.BigInteger, nullable=False),
        sa.Column("hits", sa.Integer, nullable=False),
        _ts("expires_at"),
        sa.PrimaryKeyConstraint("bucket", "window_start", name="rate_limit_counters_pk"),
    )
    op.create_index("ix_rate_limit_counters_expires_at", "rate_limit_counters", ["expires_at"])


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
