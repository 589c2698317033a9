"""Ledger core: account counters and flags, transfers, entries.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add = op.add_column
    add("accounts", sa.Column("normal_balance", sa.Text, nullable=False, server_default="credit"))
    for flag in ("debits_must_not_exceed_credits", "credits_must_not_exceed_debits"):
        add("accounts", sa.Column(flag, sa.Boolean, nullable=False, server_default=sa.text("false")))
    for counter in ("credit_limit_minor", "debits_posted", "credits_posted", "debits_pending", "credits_pending"):
        add("accounts", sa.Column(counter, sa.BigInteger, nullable=False, server_default="0"))
    add("accounts", sa.Column("idempotency_key", sa.Text, unique=True))
    add("accounts", sa.Column("body_hash", sa.Text))
    add("accounts", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()))
    op.create_check_constraint(
        "accounts_counters_non_negative",
        "accounts",
        "debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0 AND credits_pending >= 0",
    )
    op.create_check_constraint("accounts_status_known", "accounts", "status IN ('active', 'frozen', 'closed')")
    op.create_index("accounts_holder_id_id", "accounts", ["holder_id", "id"])

    op.create_table(
        "transfers",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("idempotency_key", sa.Text, nullable=False),
        sa.Column("body_hash", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("pending", sa.Boolean, nullable=False),
        sa.Column("postings", JSONB, nullable=False),
        sa.Column("reference", sa.Text),
        sa.Column("corrects_transfer_id", sa.Text),
        sa.Column("metadata", JSONB, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("timeout_at", sa.DateTime(timezone=True)),
        sa.Column("finalized_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("source", "idempotency_key", name="transfers_source_idempotency_key"),
        sa.CheckConstraint("status IN ('pending', 'posted', 'voided', 'expired')", name="transfers_status_known"),
    )
    op.create_index(
        "transfers_pending_timeout",
        "transfers",
        ["timeout_at"],
        postgresql_where=sa.text("status = 'pending' AND timeout_at IS NOT NULL"),
    )
    op.create_index(
        "transfers_reference", "transfers", ["reference"], postgresql_where=sa.text("reference IS NOT NULL")
    )

    op.create_table(
        "entries",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("transfer_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("direction", sa.Text, nullable=False),
        sa.Column("posted_delta_minor", sa.BigInteger, nullable=False),
        sa.Column("pending_delta_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("debits_posted", sa.BigInteger, nullable=False),
        sa.Column("credits_posted", sa.BigInteger, nullable=False),
        sa.Column("debits_pending", sa.BigInteger, nullable=False),
        sa.Column("credits_pending", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("entries_account_id_id", "entries", ["account_id", "id"])
    op.create_index("entries_account_id_created_at", "entries", ["account_id", "created_at", "id"])


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
