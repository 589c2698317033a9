"""Books: every account is live or test money (`accounts.livemode`), and that is part of its identity.

Why: a test payment was posted to the merchant's real merchant_pending and settled like live money (docs/architecture.md
§4, "Test and live never mix"). The opening key (`chart:merchant_pending:<mch>:CNY`) now names one account per book, so
the unique key becomes (idempotency_key, livemode). Every account that exists is live: test payments were booked as live
money until now, and the books cannot be told apart after the fact (docs/ledger.md "Books").
Adding a column with a constant default rewrites nothing (PostgreSQL ≥ 11).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("livemode", sa.Boolean, nullable=False, server_default=sa.text("true")))
    op.create_unique_constraint("accounts_idempotency_key_livemode", "accounts", ["idempotency_key", "livemode"])
    op.drop_constraint("accounts_idempotency_key_key", "accounts", type_="unique")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
