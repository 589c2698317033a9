"""Routes, fee rates, contracts, rules, settings, audit, health windows, daily volume.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATEMENTS = (
    # btree_gist lets the exclusion constraint below compare text columns with "=".
    "CREATE EXTENSION IF NOT EXISTS btree_gist",
    """
    CREATE TABLE routing_config (
        id smallint PRIMARY KEY CONSTRAINT routing_config_single_row CHECK (id = 1),
        config_version bigint NOT NULL,
        settings jsonb NOT NULL,
        settings_version integer NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "INSERT INTO routing_config (id, config_version, settings, settings_version) VALUES (1, 1, '{}', 1)",
    """
    CREATE TABLE channel_routes (
        route_id text PRIMARY KEY,
        method text NOT NULL,
        scenes jsonb NOT NULL,
        kind text NOT NULL,
        provider text NOT NULL,
        connector text NOT NULL,
        config_ref text NOT NULL,
        currency text NOT NULL,
        enabled boolean NOT NULL,
        amount_min_minor bigint NOT NULL CHECK (amount_min_minor >= 1),
        amount_max_minor bigint CHECK (amount_max_minor >= amount_min_minor),
        daily_volume_cap_minor bigint CHECK (daily_volume_cap_minor >= 1),
        opening_hours jsonb NOT NULL,
        payer_clients jsonb,
        expected_success_rate double precision NOT NULL,
        priority integer NOT NULL,
        description text NOT NULL,
        version integer NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE fee_rates (
        rate_id text PRIMARY KEY,
        route_id text NOT NULL REFERENCES channel_routes (route_id),
        rate_bps integer NOT NULL CHECK (rate_bps BETWEEN 0 AND 10000),
        min_fee_minor bigint NOT NULL CHECK (min_fee_minor >= 0),
        max_fee_minor bigint CHECK (max_fee_minor >= min_fee_minor),
        fixed_fee_minor bigint NOT NULL CHECK (fixed_fee_minor >= 0),
        industry text,
        merchant_id text,
        valid_from timestamptz NOT NULL,
        valid_until timestamptz CHECK (valid_until > valid_from),
        version integer NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT fee_rates_no_overlap EXCLUDE USING gist (
            route_id WITH =,
            (coalesce(merchant_id, '')) WITH =,
            (coalesce(industry, '')) WITH =,
            tstzrange(valid_from, valid_until) WITH &&
        )
    )
    """,
    "CREATE INDEX fee_rates_route ON fee_rates (route_id, valid_from)",
    """
    CREATE TABLE merchant_contracts (
        merchant_id text NOT NULL,
        route_id text NOT NULL REFERENCES channel_routes (route_id),
        sub_merchant_id text NOT NULL,
        enabled boolean NOT NULL,
        industry text,
        version integer NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (merchant_id, route_id)
    )
    """,
    """
    CREATE TABLE routing_rules (
        rule_id text PRIMARY KEY,
        name text NOT NULL,
        scope text NOT NULL CHECK (scope IN ('platform', 'merchant')),
        merchant_id text,
        priority integer NOT NULL,
        enabled boolean NOT NULL,
        conditions jsonb NOT NULL,
        action jsonb NOT NULL,
        version integer NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CHECK ((scope = 'merchant') = (merchant_id IS NOT NULL))
    )
    """,
    "CREATE INDEX routing_rules_merchant ON routing_rules (merchant_id)",
    """
    CREATE TABLE config_audit (
        audit_id text PRIMARY KEY,
        resource_type text NOT NULL,
        resource_id text NOT NULL,
        action text NOT NULL,
        actor text NOT NULL,
        at timestamptz NOT NULL DEFAULT now(),
        version integer NOT NULL,
        config_version bigint NOT NULL,
        before jsonb,
        after jsonb
    )
    """,
    "CREATE INDEX config_audit_resource ON config_audit (resource_type, resource_id, audit_id)",
    """
    CREATE TABLE route_health (
        route_id text PRIMARY KEY,
        state text NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
        changed_at timestamptz,
        consecutive_failures integer NOT NULL,
        half_open_successes integer NOT NULL,
        window_start timestamptz,
        window_attempts integer NOT NULL,
        window_failures integer NOT NULL,
        previous_attempts integer NOT NULL,
        previous_failures integer NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE route_health_buckets (
        route_id text NOT NULL,
        bucket_start timestamptz NOT NULL,
        attempts integer NOT NULL,
        succeeded integer NOT NULL,
        declined integer NOT NULL,
        errors integer NOT NULL,
        timeouts integer NOT NULL,
        latency_ms_sum bigint NOT NULL,
        latency_samples integer NOT NULL,
        PRIMARY KEY (route_id, bucket_start)
    )
    """,
    "CREATE INDEX route_health_buckets_start ON route_health_buckets (bucket_start)",
    """
    CREATE TABLE route_daily_volume (
        route_id text NOT NULL,
        local_date date NOT NULL,
        volume_minor bigint NOT NULL,
        payment_count bigint NOT NULL,
        PRIMARY KEY (route_id, local_date)
    )
    """,
    """
    CREATE TABLE counted_attempts (
        attempt_id text PRIMARY KEY,
        route_id text NOT NULL,
        counted_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX counted_attempts_at ON counted_attempts (counted_at)",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
