"""Campaigns, coupon stocks, claim counters, coupons, redemptions (online and in store), refunds, bulk issues.

Frozen DDL (rendered once from store/tables.py at the time of writing): later changes need a new migration.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATEMENTS = (
    """CREATE TABLE campaigns (
    campaign_id TEXT NOT NULL,
    owner_merchant_id TEXT,
    name TEXT NOT NULL,
    description TEXT DEFAULT '' NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (campaign_id)
)""",
    """CREATE TABLE coupon_stocks (
    stock_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    owner_merchant_id TEXT,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    discount_kind TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount_off_minor BIGINT,
    percent_off_bps INTEGER,
    discount_cap_minor BIGINT,
    threshold_minor BIGINT NOT NULL,
    face_value_minor BIGINT NOT NULL,
    valid_from TIMESTAMP WITH TIME ZONE,
    valid_until TIMESTAMP WITH TIME ZONE,
    valid_days_after_claim INTEGER,
    merchant_ids TEXT[] NOT NULL,
    store_ids TEXT[] NOT NULL,
    scenes TEXT[] NOT NULL,
    payment_methods TEXT[] NOT NULL,
    funding_party TEXT NOT NULL,
    platform_share_bps INTEGER NOT NULL,
    refund_policy TEXT NOT NULL,
    budget_count BIGINT NOT NULL,
    budget_minor BIGINT NOT NULL,
    remaining_count BIGINT NOT NULL,
    remaining_budget_minor BIGINT NOT NULL,
    per_user_limit INTEGER NOT NULL,
    per_user_daily_limit INTEGER,
    daily_count_limit BIGINT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (stock_id),
    CONSTRAINT coupon_stocks_budget_nonnegative CHECK (remaining_count >= 0 AND remaining_budget_minor >= 0),
    FOREIGN KEY(campaign_id) REFERENCES campaigns (campaign_id)
)""",
    """CREATE INDEX coupon_stocks_campaign ON coupon_stocks (campaign_id)""",
    """CREATE INDEX coupon_stocks_owner ON coupon_stocks (owner_merchant_id, stock_id)""",
    """CREATE TABLE claim_counters (
    stock_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    period TEXT NOT NULL,
    claimed_count BIGINT NOT NULL,
    PRIMARY KEY (stock_id, subject, period)
)""",
    """CREATE TABLE coupons (
    coupon_id TEXT NOT NULL,
    stock_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    source TEXT NOT NULL,
    code TEXT NOT NULL,
    status TEXT NOT NULL,
    face_value_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    valid_from TIMESTAMP WITH TIME ZONE NOT NULL,
    valid_until TIMESTAMP WITH TIME ZONE NOT NULL,
    redemption_id TEXT,
    claimed_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (coupon_id),
    CONSTRAINT coupons_user_request_key UNIQUE (user_id, request_id),
    FOREIGN KEY(stock_id) REFERENCES coupon_stocks (stock_id),
    UNIQUE (code)
)""",
    """CREATE INDEX coupons_stock_status ON coupons (stock_id, status)""",
    """CREATE INDEX coupons_user ON coupons (user_id, coupon_id)""",
    """CREATE TABLE redemptions (
    redemption_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    request_key TEXT NOT NULL,
    coupon_id TEXT NOT NULL,
    stock_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    store_id TEXT,
    payment_id TEXT,
    status TEXT NOT NULL,
    currency TEXT NOT NULL,
    order_amount_minor BIGINT NOT NULL,
    discount_minor BIGINT NOT NULL,
    payable_minor BIGINT NOT NULL,
    funding_party TEXT NOT NULL,
    platform_share_bps INTEGER NOT NULL,
    platform_minor BIGINT NOT NULL,
    merchant_minor BIGINT NOT NULL,
    refunded_minor BIGINT DEFAULT '0' NOT NULL,
    reversed_platform_minor BIGINT DEFAULT '0' NOT NULL,
    reversed_merchant_minor BIGINT DEFAULT '0' NOT NULL,
    locked_until TIMESTAMP WITH TIME ZONE,
    used_at TIMESTAMP WITH TIME ZONE,
    finished_at TIMESTAMP WITH TIME ZONE,
    release_reason TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (redemption_id),
    CONSTRAINT redemptions_request_key UNIQUE (kind, request_key),
    FOREIGN KEY(coupon_id) REFERENCES coupons (coupon_id)
)""",
    """CREATE INDEX redemptions_campaign ON redemptions (campaign_id, status)""",
    """CREATE INDEX redemptions_locked_until ON redemptions (locked_until) WHERE status = 'locked'""",
    """CREATE TABLE redemption_refunds (
    refund_id TEXT NOT NULL,
    redemption_id TEXT NOT NULL,
    refund_amount_minor BIGINT NOT NULL,
    platform_minor BIGINT NOT NULL,
    merchant_minor BIGINT NOT NULL,
    coupon_returned TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (refund_id),
    FOREIGN KEY(redemption_id) REFERENCES redemptions (redemption_id)
)""",
    """CREATE TABLE bulk_issues (
    bulk_issue_id TEXT NOT NULL,
    stock_id TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    request_id TEXT NOT NULL,
    total_count INTEGER NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (bulk_issue_id),
    CONSTRAINT bulk_issues_request_key UNIQUE (stock_id, request_id),
    FOREIGN KEY(stock_id) REFERENCES coupon_stocks (stock_id)
)""",
    """CREATE TABLE bulk_issue_items (
    bulk_issue_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL,
    coupon_id TEXT,
    failure_code TEXT,
    PRIMARY KEY (bulk_issue_id, seq),
    FOREIGN KEY(bulk_issue_id) REFERENCES bulk_issues (bulk_issue_id)
)""",
    """CREATE INDEX bulk_issue_items_pending ON bulk_issue_items (bulk_issue_id, seq) WHERE status = 'pending'""",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
