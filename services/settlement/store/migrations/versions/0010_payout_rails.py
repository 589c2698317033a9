"""Payout rails: a payout or wallet withdrawal goes to the bank (default), WeChat change or an Alipay account.

`rail` says which; `user_action` keeps what the payee must do to receive it (WeChat 商家转账: the
`package_info` their WeChat confirms). Existing rows are bank payouts.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

STATEMENTS = (
    "ALTER TABLE payouts ADD COLUMN rail TEXT NOT NULL DEFAULT 'bank'",
    "ALTER TABLE payouts ADD COLUMN user_action JSONB",
    "ALTER TABLE payouts ADD CONSTRAINT payouts_rail_known CHECK (rail IN ('bank', 'wechat_change', 'alipay_account'))",
    "ALTER TABLE withdrawals ADD COLUMN rail TEXT NOT NULL DEFAULT 'bank'",
    "ALTER TABLE withdrawals ADD COLUMN user_action JSONB",
    "ALTER TABLE withdrawals ADD CONSTRAINT withdrawals_rail_known "
    "CHECK (rail IN ('bank', 'wechat_change', 'alipay_account'))",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
