"""Payouts of settled funds to merchants' bank accounts.

Frozen DDL (rendered once from store/tables.py at the time of writing): later changes need a new migration.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

STATEMENTS = (
    """CREATE TABLE payouts (
    payout_id TEXT NOT NULL,
    holder_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    account_no TEXT NOT NULL,
    account_name TEXT NOT NULL,
    status TEXT NOT NULL,
    instruction_transfer_id TEXT,
    submitted_at TIMESTAMP WITH TIME ZONE,
    bank_ref TEXT,
    bank_status TEXT,
    failure_code TEXT,
    outcome_transfer_id TEXT,
    attempt_count INTEGER DEFAULT '0' NOT NULL,
    last_error TEXT,
    next_attempt_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    finished_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (payout_id),
    CONSTRAINT payouts_holder_key UNIQUE (holder_id, idempotency_key)
)""",
    """CREATE INDEX payouts_due ON payouts (status, next_attempt_at)""",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
