"""Wallet events and top-up orders: the reconciler's index of pending operations, the top-up orders placed
with the cashier.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_DDL = """
CREATE INDEX wallet_operations_pending ON wallet_operations (id) WHERE status = 'pending';
CREATE TABLE wallet_topup_orders (
  id text PRIMARY KEY,
  holder_id text NOT NULL REFERENCES wallet_holders (holder_id),
  idempotency_key text NOT NULL,
  body_hash text NOT NULL,
  amount_minor bigint NOT NULL CHECK (amount_minor > 0),
  currency text NOT NULL,
  scene text NOT NULL,
  merchant_id text NOT NULL,
  merchant_order_no text NOT NULL UNIQUE,
  payment_id text UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (holder_id, idempotency_key)
)
"""


def upgrade() -> None:
    for statement in _DDL.split(";"):
        if statement.strip():
            op.execute(statement)  # asyncpg takes one statement per execute


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
