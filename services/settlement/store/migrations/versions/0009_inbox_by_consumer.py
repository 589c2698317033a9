"""The inbox keyed by (consumer, event_id): two consumer groups of the settlement service each apply an event once
(keyed by event id alone, the first group to apply it made the other skip it). Rows written before get the
legacy consumer "" and still count as seen by every consumer until retention removes them.

Revision ID: 0009
Revises: 0008
"""

from libs.common.migrations import key_inbox_by_consumer

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    key_inbox_by_consumer()


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
