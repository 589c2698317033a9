"""Tables of the gateway database (SQLAlchemy Core).

Nothing here is stored in plaintext that would let someone holding a database dump call the API:
bearer secrets are SHA-256 hashes, merchant HMAC and webhook secrets are AES-GCM sealed (see
`gateway.domain.credentials`). The guard tables (nonces, idempotency records, rate-limit counters) are
what makes several gateway replicas behave as one.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.outbox_tables import add_messaging_tables

metadata = MetaData()
add_messaging_tables(metadata)

platforms = Table(
    "platforms",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

merchants = Table(
    "merchants",
    metadata,
    Column("id", Text, primary_key=True),
    Column("platform_id", Text, nullable=False, index=True),
    Column("name", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="active"),
    Column("webhook_secret_sealed", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("status IN ('active', 'disabled')", name="merchants_status_known"),
)

users = Table(
    "users",
    metadata,
    Column("id", Text, primary_key=True),
    Column("platform_id", Text, nullable=False, index=True),
    Column("name", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# One row per key. Merchant keys carry a sealed HMAC secret (and optionally an RSA public key);
# platform admin keys carry only the hash of their bearer secret.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", Text, primary_key=True),
    Column("owner_kind", Text, nullable=False),
    Column("owner_id", Text, nullable=False),
    Column("platform_id", Text, nullable=False),
    Column("secret_hash", LargeBinary),
    Column("secret_sealed", LargeBinary),
    Column("rsa_public_key_pem", Text),
    Column("status", Text, nullable=False, server_default="active"),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("replaced_by", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("owner_kind IN ('merchant', 'platform')", name="api_keys_owner_kind_known"),
    CheckConstraint("status IN ('active', 'revoked')", name="api_keys_status_known"),
    CheckConstraint(
        "(owner_kind = 'merchant' AND secret_sealed IS NOT NULL) "
        "OR (owner_kind = 'platform' AND secret_hash IS NOT NULL)",
        name="api_keys_secret_present",
    ),
    Index("api_keys_owner", "owner_kind", "owner_id"),
)

user_tokens = Table(
    "user_tokens",
    metadata,
    Column("token_id", Text, primary_key=True),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("user_id", Text, nullable=False, index=True),
    Column("platform_id", Text, nullable=False),
    Column("merchant_id", Text),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# A nonce is refused while its row exists; rows outlive the ±window in which their timestamp is accepted.
request_nonces = Table(
    "request_nonces",
    metadata,
    Column("key_id", Text, nullable=False),
    Column("nonce", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    PrimaryKeyConstraint("key_id", "nonce", name="request_nonces_pk"),
)

idempotency_records = Table(
    "idempotency_records",
    metadata,
    Column("scope", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("request_hash", LargeBinary, nullable=False),
    Column("state", Text, nullable=False),
    Column("lock_token", Text),
    Column("locked_until", DateTime(timezone=True)),
    Column("response_status", Integer),
    Column("response_headers", JSONB),
    Column("response_body", LargeBinary),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    PrimaryKeyConstraint("scope", "key", name="idempotency_records_pk"),
    CheckConstraint("state IN ('in_progress', 'done')", name="idempotency_records_state_known"),
)

rate_limit_counters = Table(
    "rate_limit_counters",
    metadata,
    Column("bucket", Text, nullable=False),
    Column("window_start", BigInteger, nullable=False),
    Column("hits", Integer, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    PrimaryKeyConstraint("bucket", "window_start", name="rate_limit_counters_pk"),
)

# One-time sign-in links into My Wallet (`POST /v1/platform/users/{id}/wallet-sign-in-links`): only the
# SHA-256 of the secret is kept; `used_at` is set once, by a compare-and-set, when the web process redeems it.
wallet_sign_in_links = Table(
    "wallet_sign_in_links",
    metadata,
    Column("link_id", Text, primary_key=True),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("platform_id", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    Column("used_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# A user's payment PIN (argon2id hash, PHC string) and its wrong-try counter: an authentication factor of
# the user, kept next to the user's other credentials (tokens). Never the PIN itself.
payment_pins = Table(
    "payment_pins",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("platform_id", Text, nullable=False),
    Column("pin_hash", Text, nullable=False),
    Column("failed_count", Integer, nullable=False, server_default="0"),
    Column("locked_until", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("failed_count >= 0", name="payment_pins_failed_count_nonnegative"),
)
