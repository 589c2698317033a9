"""Points rules, what each payment earned, refunds seen, daily caps.

Frozen DDL (rendered once from store/tables.py at the time of writing): later changes need a new migration.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATEMENTS = (
    """CREATE TABLE points_rules (
    rule_id TEXT NOT NULL,
    owner_merchant_id TEXT,
    merchant_id TEXT,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    currency TEXT NOT NULL,
    unit_minor BIGINT NOT NULL,
    points_per_unit BIGINT NOT NULL,
    payment_points_max BIGINT,
    user_daily_points_max BIGINT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (rule_id)
)""",
    """CREATE INDEX points_rules_merchant ON points_rules (merchant_id, status)""",
    """CREATE TABLE points_earnings (
    payment_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    points BIGINT NOT NULL,
    reversed_points BIGINT DEFAULT '0' NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (payment_id)
)""",
    """CREATE INDEX points_earnings_user ON points_earnings (user_id, payment_id)""",
    """CREATE TABLE points_refunds (
    refund_id TEXT NOT NULL,
    payment_id TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (refund_id)
)""",
    """CREATE INDEX points_refunds_payment ON points_refunds (payment_id)""",
    """CREATE TABLE points_daily (
    rule_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    day TEXT NOT NULL,
    earned_points BIGINT NOT NULL,
    PRIMARY KEY (rule_id, user_id, day)
)""",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
