"""Coupons issued as a reward on an event (issue 23): `reward_rules` (a running rule issues a coupon of its stock
on the event) and `reward_first_payments` (the first succeeded payment marketing saw of a user, platform-wide
scope `*` or at one merchant: the primary key makes "first" exactly once per user and scope, whatever the order
of the cashier's events and however many replicas handle them; flows/rewards.py).

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

STATEMENTS = (
    """CREATE TABLE reward_rules (
    rule_id TEXT PRIMARY KEY,
    event TEXT NOT NULL CHECK (event IN ('first_payment')),
    scope TEXT NOT NULL,
    stock_id TEXT NOT NULL REFERENCES coupon_stocks (stock_id),
    status TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'ended')),
    issued_count INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL
)""",
    "CREATE INDEX reward_rules_running ON reward_rules (event, scope) WHERE status = 'running'",
    """CREATE TABLE reward_first_payments (
    scope TEXT NOT NULL,
    user_id TEXT NOT NULL,
    payment_id TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (scope, user_id)
)""",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE reward_first_payments")
    op.execute("DROP TABLE reward_rules")
