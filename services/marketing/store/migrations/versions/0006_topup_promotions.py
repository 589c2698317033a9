"""Top-up promotions (充值送): the rules (tiers, budget in fen, per-holder limit, validity), one grant row per
top-up payment seen (the exactly-once key) and the per-holder grant counters.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATEMENTS = (
    """CREATE TABLE topup_promotions (
    promotion_id TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    currency TEXT NOT NULL,
    tiers JSONB NOT NULL,
    budget_minor BIGINT NOT NULL,
    remaining_budget_minor BIGINT NOT NULL,
    granted_count BIGINT DEFAULT '0' NOT NULL,
    per_holder_limit INTEGER NOT NULL,
    bonus_valid_days INTEGER,
    valid_from TIMESTAMP WITH TIME ZONE,
    valid_until TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (promotion_id),
    CONSTRAINT topup_promotions_budget_not_negative CHECK (remaining_budget_minor >= 0)
)""",
    "CREATE INDEX topup_promotions_running ON topup_promotions (currency) WHERE status = 'running'",
    """CREATE TABLE topup_bonus_grants (
    payment_id TEXT NOT NULL,
    holder_id TEXT NOT NULL,
    promotion_id TEXT,
    status TEXT NOT NULL,
    currency TEXT NOT NULL,
    topup_minor BIGINT NOT NULL,
    bonus_minor BIGINT NOT NULL,
    expires_at TIMESTAMP WITH TIME ZONE,
    revoked_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (payment_id)
)""",
    "CREATE INDEX topup_bonus_grants_holder ON topup_bonus_grants (holder_id, payment_id)",
    "CREATE INDEX topup_bonus_grants_promotion ON topup_bonus_grants (promotion_id)",
    """CREATE TABLE topup_promotion_holders (
    promotion_id TEXT NOT NULL,
    holder_id TEXT NOT NULL,
    granted_count INTEGER NOT NULL,
    PRIMARY KEY (promotion_id, holder_id)
)""",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
