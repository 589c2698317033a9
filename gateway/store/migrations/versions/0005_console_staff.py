"""Console staff: members (merchant staff, operators), recovery codes, sessions, one-time links, the audit log,
maker-checker refund requests and the merchant's approval threshold (issue 16, docs/consoles.md).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "staff_members",
        sa.Column("staff_id", sa.Text, primary_key=True),
        sa.Column("platform_id", sa.Text, nullable=False),
        sa.Column("merchant_id", sa.Text),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False, server_default=""),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="invited"),
        sa.Column("password_hash", sa.Text),
        sa.Column("totp_secret_sealed", sa.LargeBinary),
        sa.Column("totp_enabled", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("totp_last_step", sa.BigInteger),
        sa.Column("failed_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_until", TS),
        sa.Column("invited_by", sa.Text),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("kind IN ('merchant', 'operator')", name="staff_members_kind_known"),
        sa.CheckConstraint("(kind = 'merchant') = (merchant_id IS NOT NULL)", name="staff_members_merchant_of_kind"),
        sa.CheckConstraint("status IN ('invited', 'active', 'removed')", name="staff_members_status_known"),
        sa.CheckConstraint("failed_count >= 0", name="staff_members_failed_count_nonnegative"),
    )
    op.create_index("staff_members_email", "staff_members", ["email"], unique=True)
    op.create_index("staff_members_merchant", "staff_members", ["merchant_id", "staff_id"])
    op.create_table(
        "staff_recovery_codes",
        sa.Column("staff_id", sa.Text, nullable=False),
        sa.Column("code_hash", sa.LargeBinary, nullable=False),
        sa.Column("used_at", TS),
        sa.PrimaryKeyConstraint("staff_id", "code_hash", name="staff_recovery_codes_pk"),
    )
    op.create_table(
        "staff_sessions",
        sa.Column("session_id", sa.Text, primary_key=True),
        sa.Column("secret_hash", sa.LargeBinary, nullable=False),
        sa.Column("staff_id", sa.Text, nullable=False),
        sa.Column("ip", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("idle_expires_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
    )
    op.create_index("ix_staff_sessions_staff_id", "staff_sessions", ["staff_id"])
    op.create_index("ix_staff_sessions_expires_at", "staff_sessions", ["expires_at"])
    op.create_table(
        "staff_links",
        sa.Column("link_id", sa.Text, primary_key=True),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.LargeBinary, nullable=False),
        sa.Column("staff_id", sa.Text, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "purpose IN ('invitation', 'password_reset', 'totp_ticket')", name="staff_links_purpose_known"
        ),
    )
    op.create_index("ix_staff_links_expires_at", "staff_links", ["expires_at"])
    op.create_table(
        "console_audit_log",
        sa.Column("audit_id", sa.Text, primary_key=True),
        sa.Column("at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("platform_id", sa.Text, nullable=False),
        sa.Column("merchant_id", sa.Text),
        sa.Column("actor_staff_id", sa.Text),
        sa.Column("actor_email", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False, server_default=""),
        sa.Column("before", JSONB),
        sa.Column("after", JSONB),
        sa.Column("ip", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("console_audit_log_merchant", "console_audit_log", ["merchant_id", "audit_id"])
    op.create_table(
        "console_refund_requests",
        sa.Column("request_id", sa.Text, primary_key=True),
        sa.Column("merchant_id", sa.Text, nullable=False),
        sa.Column("payment_id", sa.Text, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("requested_by_email", sa.Text, nullable=False),
        sa.Column("decided_by", sa.Text),
        sa.Column("decided_at", TS),
        sa.Column("refund_id", sa.Text),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("amount_minor > 0", name="console_refund_requests_amount_positive"),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected', 'executed')", name="console_refund_requests_status_known"
        ),
    )
    op.create_index(
        "console_refund_requests_merchant", "console_refund_requests", ["merchant_id", "status", "request_id"]
    )
    op.create_table(
        "console_merchant_settings",
        sa.Column("merchant_id", sa.Text, primary_key=True),
        sa.Column("refund_approval_threshold_minor", sa.BigInteger, nullable=False),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "refund_approval_threshold_minor >= 0", name="console_merchant_settings_threshold_nonnegative"
        ),
    )


def downgrade() -> None:
    for table in (
        "console_merchant_settings",
        "console_refund_requests",
        "console_audit_log",
        "staff_links",
        "staff_sessions",
        "staff_recovery_codes",
        "staff_members",
    ):
        op.drop_table(table)
