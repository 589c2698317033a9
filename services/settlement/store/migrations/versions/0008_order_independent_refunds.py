"""Refunds applied from stored facts (order-independent consumers) and the settlement ↔ ledger check.

`refund_records.applied_at`: when the refund's effect (its settlement entry and split reversal) was
derived; NULL while its payment is not known as succeeded (a refund that overtook its payment waits here
and is applied by the payment's event). Existing refunds that already had their effect are marked applied.
`consistency_checks`: each run of the cross-service check (settlement's unsettled net vs the ledger's
merchant_pending), the latest one answering `GET /v1/settlement/consistency`.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

STATEMENTS = (
    "ALTER TABLE refund_records ADD COLUMN applied_at TIMESTAMP WITH TIME ZONE",
    """UPDATE refund_records r SET applied_at = now()
    WHERE r.status <> 'succeeded'
       OR EXISTS (SELECT 1 FROM settlement_entries e WHERE e.refund_id = r.refund_id)
       OR EXISTS (SELECT 1 FROM split_executions s WHERE s.refund_id = r.refund_id)""",
    "CREATE INDEX refund_records_unapplied ON refund_records (payment_id) WHERE applied_at IS NULL",
    """CREATE TABLE consistency_checks (
    check_id BIGINT GENERATED ALWAYS AS IDENTITY,
    checked_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    ok BOOLEAN NOT NULL,
    holders_checked INTEGER NOT NULL,
    mismatches JSONB NOT NULL,
    differences JSONB NOT NULL,
    PRIMARY KEY (check_id)
)""",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
