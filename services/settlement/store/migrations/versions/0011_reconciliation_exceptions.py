"""Reconciliation exceptions pool: every unresolved mismatch is a work item for a person.

An item of `reconciliation_items` without a row here is `open`; the row appears on its first action
(assign, re-query, resolve), so the reconciliation run itself is not changed. `version` makes every change a
compare-and-set. `reconciliation_exception_actions` is the item's trail (who did what, and what the channel
answered to a re-query).

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

STATEMENTS = (
    """
    CREATE TABLE reconciliation_exceptions (
        item_id BIGINT PRIMARY KEY REFERENCES reconciliation_items (item_id),
        state TEXT NOT NULL CONSTRAINT reconciliation_exceptions_state_known
            CHECK (state IN ('open', 'assigned', 'resolved')),
        assignee TEXT,
        resolution_reason TEXT,
        resolved_by TEXT,
        resolved_at TIMESTAMPTZ,
        requery_count INTEGER NOT NULL DEFAULT 0,
        last_requery JSONB,
        last_requery_at TIMESTAMPTZ,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT reconciliation_exceptions_resolved_has_reason
            CHECK (state <> 'resolved' OR (resolution_reason IS NOT NULL AND resolved_by IS NOT NULL)),
        CONSTRAINT reconciliation_exceptions_assigned_has_assignee CHECK (state <> 'assigned' OR assignee IS NOT NULL)
    )
    """,
    "CREATE INDEX reconciliation_exceptions_state ON reconciliation_exceptions (state, item_id)",
    """
    CREATE TABLE reconciliation_exception_actions (
        action_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        item_id BIGINT NOT NULL REFERENCES reconciliation_items (item_id),
        action TEXT NOT NULL CONSTRAINT reconciliation_exception_actions_known
            CHECK (action IN ('assigned', 'requeried', 'resolved')),
        actor TEXT NOT NULL,
        detail JSONB NOT NULL DEFAULT '{}'::jsonb,
        at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX reconciliation_exception_actions_item ON reconciliation_exception_actions (item_id, action_id)",
    # The pool shows each day's latest finished run only: found by (channel, merchant, day).
    "CREATE INDEX reconciliation_runs_merchant_day "
    "ON reconciliation_runs (channel, merchant_id, bill_date, started_at)",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
