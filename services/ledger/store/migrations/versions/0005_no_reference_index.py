"""Drop the index on transfers.reference: nothing reads by it, and every transfer paid an insert into it.

Lookups of a business event's transfer go by `(source, idempotency_key)`, which is unique and indexed.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("transfers_reference", table_name="transfers")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
