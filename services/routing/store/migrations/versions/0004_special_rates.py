"""Special-rate programmes: merchant profiles, applications, and the succeeded payments' fees (projection).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STATEMENTS = (
    """
    CREATE TABLE merchant_profiles (
        merchant_id text PRIMARY KEY,
        entity_type text NOT NULL,
        industry_code text NOT NULL CHECK (industry_code ~ '^[0-9]{4}$'),
        version integer NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE special_rate_applications (
        application_id text PRIMARY KEY,
        merchant_id text NOT NULL,
        programme_id text NOT NULL,
        status text NOT NULL CHECK (status IN ('draft', 'submitted', 'approved', 'rejected')),
        documents jsonb NOT NULL,
        effective_from timestamptz,
        effective_until timestamptz,
        rejection_reason text,
        rate_ids jsonb NOT NULL DEFAULT '[]',
        version integer NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CHECK (status <> 'approved' OR (effective_from IS NOT NULL AND effective_until > effective_from))
    )
    """,
    "CREATE INDEX special_rate_applications_merchant ON special_rate_applications (merchant_id, application_id)",
    """
    CREATE TABLE merchant_payment_fees (
        payment_id text PRIMARY KEY,
        merchant_id text NOT NULL,
        route_id text NOT NULL,
        method text NOT NULL,
        currency text NOT NULL,
        amount_minor bigint NOT NULL CHECK (amount_minor >= 0),
        fee_minor bigint NOT NULL CHECK (fee_minor >= 0),
        succeeded_at timestamptz NOT NULL
    )
    """,
    "CREATE INDEX merchant_payment_fees_time ON merchant_payment_fees (succeeded_at)",
    "CREATE INDEX merchant_payment_fees_merchant ON merchant_payment_fees (merchant_id, succeeded_at)",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
