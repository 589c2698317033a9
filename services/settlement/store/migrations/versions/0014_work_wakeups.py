"""Settlement's work wakes its loops (libs/common/wakeups.py): a split made due (pending, confirming, voiding), a
payout, withdrawal or profit-sharing order made pending sends `pg_notify('juhe_work', '<table>')` in its
transaction, so those loops sleep long while idle instead of polling every few seconds (docs/performance.md,
"Fifth pass"). They still poll while their listener is not connected.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

from libs.common.wakeups import drop_work_notify_trigger_sql, work_notify_trigger_sql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

DUE_STATUSES = {
    "split_executions": ("pending", "confirming", "voiding"),
    "payouts": ("pending",),
    "withdrawals": ("pending",),
    "profit_sharing_orders": ("pending",),
}


def upgrade() -> None:
    for table, statuses in DUE_STATUSES.items():
        for statement in work_notify_trigger_sql(table, statuses):
            op.execute(statement)


def downgrade() -> None:
    for table in DUE_STATUSES:
        op.execute(drop_work_notify_trigger_sql(table))
