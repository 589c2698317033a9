"""Big wallet: holders with KYC, typed sub-accounts, entitlement overrides and their audit, operations, bills.

Every sub-account is a ledger account (table `accounts`); these tables hold what the ledger core does not:
who the holder is, which account is which sub-account, and the wallet's business operations.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_DDL = """
CREATE TABLE wallet_holders (
  holder_id text PRIMARY KEY,
  holder_type text NOT NULL CHECK (holder_type IN ('person', 'merchant')),
  name text NOT NULL,
  document_number text NOT NULL,
  phone text,
  bank_card text,
  legal_person text,
  settlement_account text,
  kyc_status text NOT NULL DEFAULT 'unverified',
  kyc_reason text,
  kyc_request_id text,
  body_hash text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (holder_type, document_number)
);
CREATE UNIQUE INDEX wallet_holders_kyc_request ON wallet_holders (kyc_request_id);
CREATE TABLE wallet_subaccounts (
  account_id text PRIMARY KEY,
  holder_id text NOT NULL REFERENCES wallet_holders (holder_id),
  subaccount_type text NOT NULL,
  merchant_id text NOT NULL DEFAULT '',
  currency text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (holder_id, subaccount_type, merchant_id, currency)
);
CREATE TABLE wallet_entitlements (
  holder_type text NOT NULL,
  kyc_level int NOT NULL,
  subaccount_type text NOT NULL,
  action text NOT NULL,
  allowed boolean NOT NULL,
  single_limit_minor bigint,
  daily_limit_minor bigint,
  monthly_limit_minor bigint,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (holder_type, kyc_level, subaccount_type, action)
);
CREATE TABLE wallet_entitlement_changes (
  id text PRIMARY KEY,
  holder_type text NOT NULL,
  kyc_level int NOT NULL,
  subaccount_type text NOT NULL,
  action text NOT NULL,
  before jsonb NOT NULL,
  after jsonb NOT NULL,
  actor text NOT NULL,
  reason text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE wallet_operations (
  id text PRIMARY KEY,
  holder_id text NOT NULL,
  kind text NOT NULL,
  idempotency_key text NOT NULL,
  transfer_id text NOT NULL,
  status text NOT NULL,
  amount_minor bigint NOT NULL,
  currency text NOT NULL,
  details jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (kind, idempotency_key)
);
CREATE INDEX wallet_operations_holder ON wallet_operations (holder_id, id);
CREATE TABLE wallet_bills (
  id text PRIMARY KEY,
  holder_id text NOT NULL,
  currency text NOT NULL,
  amount_due_minor bigint NOT NULL CHECK (amount_due_minor > 0),
  period text NOT NULL,
  due_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (holder_id, currency, period)
);
"""


def upgrade() -> None:
    for statement in _DDL.split(";"):
        if statement.strip():
            op.execute(statement)  # asyncpg takes one statement per execute


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
