"""A pending webhook delivery wakes the cashier's delivery loop (libs/common/wakeups.py): a trigger sends
`pg_notify('juhe_work', 'webhook_deliveries')` in the transaction that inserts one (or sets one back to pending),
so the loop sleeps long while idle instead of polling the table every few seconds (docs/performance.md, "Fifth
pass"). The loop still polls while its listener is not connected.

Revision ID: 0024
Revises: 0023
"""

from alembic import op

from libs.common.wakeups import drop_work_notify_trigger_sql, work_notify_trigger_sql

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in work_notify_trigger_sql("webhook_deliveries", ("pending",)):
        op.execute(statement)


def downgrade() -> None:
    op.execute(drop_work_notify_trigger_sql("webhook_deliveries"))
