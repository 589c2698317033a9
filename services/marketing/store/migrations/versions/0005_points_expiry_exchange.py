"""Points expiry and exchange: a rule's `expiry_days`, each earning as a lot (when it expires, how much of it
was exchanged or expired), a stock's `points_price`, and the exchanges of points for coupons.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

STATEMENTS = (
    "ALTER TABLE points_rules ADD COLUMN expiry_days INTEGER",
    "ALTER TABLE points_earnings ADD COLUMN expires_at TIMESTAMP WITH TIME ZONE",
    "ALTER TABLE points_earnings ADD COLUMN consumed_points BIGINT DEFAULT '0' NOT NULL",
    "ALTER TABLE points_earnings ADD COLUMN expired_points BIGINT DEFAULT '0' NOT NULL",
    "CREATE INDEX points_earnings_expiry ON points_earnings (expires_at) WHERE expired_points = 0",
    "ALTER TABLE coupon_stocks ADD COLUMN points_price BIGINT",
    """CREATE TABLE points_exchanges (
    exchange_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    stock_id TEXT NOT NULL,
    coupon_id TEXT NOT NULL,
    points BIGINT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (exchange_id),
    CONSTRAINT points_exchanges_request UNIQUE (user_id, request_id)
)""",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
