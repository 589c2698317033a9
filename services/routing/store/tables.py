"""Tables of the routing database (SQLAlchemy Core).

Configuration (routes, fee rates, contracts, rules, settings) is versioned per row (`version`) and as a
whole (`routing_config.config_version`, bumped in the same transaction as any change), and every
change leaves a `config_audit` row with who, when, before and after. Deciders cache the configuration
by `config_version` and check it on every decision, so all replicas use the same one.

Health (`route_health`, `route_health_buckets`, `route_daily_volume`) is written by the consumer of
attempt outcomes under row locks; it is shared state. Every transaction that changes it bumps
`route_health_version.health_version` (a deferred trigger, migration 0005), which a decider checks on every
decision beside `config_version` before reusing the snapshot it holds (store/snapshot.py).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.outbox_tables import add_messaging_tables

metadata = MetaData()
add_messaging_tables(metadata)

routing_config = Table(
    "routing_config",
    metadata,
    Column("id", SmallInteger, primary_key=True),  # always 1: a single row
    Column("config_version", BigInteger, nullable=False),
    Column("settings", JSONB, nullable=False),
    Column("settings_version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("id = 1", name="routing_config_single_row"),
)

channel_routes = Table(
    "channel_routes",
    metadata,
    Column("route_id", Text, primary_key=True),
    Column("method", Text, nullable=False),
    Column("scenes", JSONB, nullable=False),
    Column("kind", Text, nullable=False),
    Column("provider", Text, nullable=False),
    Column("connector", Text, nullable=False),
    Column("config_ref", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("amount_min_minor", BigInteger, nullable=False),
    Column("amount_max_minor", BigInteger),
    Column("daily_volume_cap_minor", BigInteger),
    Column("opening_hours", JSONB, nullable=False),
    Column("payer_clients", JSONB),
    Column("expected_success_rate", Float, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("description", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

fee_rates = Table(
    "fee_rates",
    metadata,
    Column("rate_id", Text, primary_key=True),
    Column("route_id", Text, ForeignKey("channel_routes.route_id"), nullable=False),
    Column("rate_bps", Integer, nullable=False),
    Column("min_fee_minor", BigInteger, nullable=False),
    Column("max_fee_minor", BigInteger),
    Column("fixed_fee_minor", BigInteger, nullable=False),
    Column("industry", Text),
    Column("merchant_id", Text),
    Column("valid_from", DateTime(timezone=True), nullable=False),
    Column("valid_until", DateTime(timezone=True)),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("fee_rates_route", "route_id", "valid_from"),
    # The migration adds an exclusion constraint: no two rates of one (route, merchant, industry)
    # overlap in time, even under concurrent writes.
)

merchant_contracts = Table(
    "merchant_contracts",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("route_id", Text, ForeignKey("channel_routes.route_id"), nullable=False),
    Column("sub_merchant_id", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("industry", Text),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "route_id"),
)

routing_rules = Table(
    "routing_rules",
    metadata,
    Column("rule_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("merchant_id", Text),
    Column("priority", Integer, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("conditions", JSONB, nullable=False),
    Column("action", JSONB, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("routing_rules_merchant", "merchant_id"),
)

config_audit = Table(
    "config_audit",
    metadata,
    Column("audit_id", Text, primary_key=True),  # aud_<uuidv7>: sortable by time
    Column("resource_type", Text, nullable=False),  # channel_route | fee_rate | contract | rule | settings
    Column("resource_id", Text, nullable=False),
    Column("action", Text, nullable=False),  # created | updated | deleted | expired
    Column("actor", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("version", Integer, nullable=False),  # the resource's version after the change
    Column("config_version", BigInteger, nullable=False),
    Column("before", JSONB),
    Column("after", JSONB),
    Index("config_audit_resource", "resource_type", "resource_id", "audit_id"),
)

route_health = Table(
    "route_health",
    metadata,
    Column("route_id", Text, primary_key=True),
    Column("state", Text, nullable=False),
    Column("changed_at", DateTime(timezone=True)),
    Column("consecutive_failures", Integer, nullable=False),
    Column("half_open_successes", Integer, nullable=False),
    Column("window_start", DateTime(timezone=True)),
    Column("window_attempts", Integer, nullable=False),
    Column("window_failures", Integer, nullable=False),
    Column("previous_attempts", Integer, nullable=False),
    Column("previous_failures", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# One row (id 1): bumped at the commit of every transaction that changed the three health tables (triggers).
route_health_version = Table(
    "route_health_version",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("health_version", BigInteger, nullable=False),
    Column("changed_xact", BigInteger),  # the transaction that last bumped it: once per transaction
    CheckConstraint("id = 1", name="route_health_version_single_row"),
)

route_health_buckets = Table(
    "route_health_buckets",
    metadata,
    Column("route_id", Text, nullable=False),
    Column("bucket_start", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("succeeded", Integer, nullable=False),
    Column("declined", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("timeouts", Integer, nullable=False),
    Column("latency_ms_sum", BigInteger, nullable=False),
    Column("latency_samples", Integer, nullable=False),
    PrimaryKeyConstraint("route_id", "bucket_start"),
    Index("route_health_buckets_start", "bucket_start"),
)

route_daily_volume = Table(
    "route_daily_volume",
    metadata,
    Column("route_id", Text, nullable=False),
    Column("local_date", Date, nullable=False),
    Column("volume_minor", BigInteger, nullable=False),
    Column("payment_count", BigInteger, nullable=False),
    PrimaryKeyConstraint("route_id", "local_date"),
)

# Attempt ids already counted: the cashier may report one attempt in two events
# (payment.attempt_failed, then payment.failed); it must count once. Pruned after a retention period.
counted_attempts = Table(
    "counted_attempts",
    metadata,
    Column("attempt_id", Text, primary_key=True),
    Column("route_id", Text, nullable=False),
    Column("counted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("counted_attempts_at", "counted_at"),
)

# Special-rate programmes (domain/special_rates.py): the merchant's profile (eligibility), its applications,
# and one row per succeeded payment (from `payment.succeeded`: the fee the route quoted), kept
# `PAYMENT_FEES_RETENTION_DAYS` for the savings projection over the last 30 days.
merchant_profiles = Table(
    "merchant_profiles",
    metadata,
    Column("merchant_id", Text, primary_key=True),
    Column("entity_type", Text, nullable=False),
    Column("industry_code", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

special_rate_applications = Table(
    "special_rate_applications",
    metadata,
    Column("application_id", Text, primary_key=True),
    Column("merchant_id", Text, nullable=False),
    Column("programme_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("documents", JSONB, nullable=False),
    Column("effective_from", DateTime(timezone=True)),
    Column("effective_until", DateTime(timezone=True)),
    Column("rejection_reason", Text),
    Column("rate_ids", JSONB, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("special_rate_applications_merchant", "merchant_id", "application_id"),
)

merchant_payment_fees = Table(
    "merchant_payment_fees",
    metadata,
    Column("payment_id", Text, primary_key=True),
    Column("merchant_id", Text, nullable=False),
    Column("route_id", Text, nullable=False),
    Column("method", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("fee_minor", BigInteger, nullable=False),
    Column("succeeded_at", DateTime(timezone=True), nullable=False),
    Index("merchant_payment_fees_time", "succeeded_at"),
    Index("merchant_payment_fees_merchant", "merchant_id", "succeeded_at"),
)
