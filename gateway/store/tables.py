"""Tables of the gateway database (SQLAlchemy Core).

Nothing here is stored in plaintext that would let someone holding a database dump call the API:
bearer secrets are SHA-256 hashes, merchant HMAC and webhook secrets are AES-GCM sealed (see
`gateway.domain.credentials`). The guard tables (nonces, idempotency records, rate-limit counters) are
what makes several gateway replicas behave as one.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
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
    false,
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
    # The API version the merchant's requests use without a Juhe-Version header (null: the latest).
    Column("api_version", Text),
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
    # test | live (docs/test-mode.md): test keys reach only sandboxes and see only test objects. Keys made before
    # modes existed are live (migration 0007); a key inserted without one is test, the side that moves no money.
    Column("mode", Text, nullable=False, server_default="test"),
    CheckConstraint("owner_kind IN ('merchant', 'platform')", name="api_keys_owner_kind_known"),
    CheckConstraint("mode IN ('test', 'live')", name="api_keys_mode_known"),
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
    # The body sealed with the credentials key ring (it may carry a secret); false only for pre-0010 records.
    Column("response_sealed", Boolean, nullable=False, server_default=false()),
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

# ---- console staff (issue 16, gateway/flows/staff.py, docs/consoles.md) ---------------------------------------------
# Merchant staff (merchant_id set) and platform operators (merchant_id NULL). argon2id password hashes; the TOTP
# secret sealed like the merchants' HMAC secrets (it must be read back to check a code). `totp_last_step` refuses
# a code seen before. Staff are never deleted: removal sets status 'removed' and revokes their sessions.
staff_members = Table(
    "staff_members",
    metadata,
    Column("staff_id", Text, primary_key=True),
    Column("platform_id", Text, nullable=False),
    Column("merchant_id", Text),
    Column("kind", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("name", Text, nullable=False, server_default=""),
    Column("role", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="invited"),
    Column("password_hash", Text),
    Column("totp_secret_sealed", LargeBinary),
    Column("totp_enabled", Boolean, nullable=False, server_default="false"),
    Column("totp_last_step", BigInteger),
    Column("failed_count", Integer, nullable=False, server_default="0"),
    Column("locked_until", DateTime(timezone=True)),
    Column("invited_by", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("kind IN ('merchant', 'operator')", name="staff_members_kind_known"),
    CheckConstraint("(kind = 'merchant') = (merchant_id IS NOT NULL)", name="staff_members_merchant_of_kind"),
    CheckConstraint("status IN ('invited', 'active', 'removed')", name="staff_members_status_known"),
    CheckConstraint("failed_count >= 0", name="staff_members_failed_count_nonnegative"),
    Index("staff_members_email", "email", unique=True),  # stored lower-cased
    Index("staff_members_merchant", "merchant_id", "staff_id"),
)

staff_recovery_codes = Table(
    "staff_recovery_codes",
    metadata,
    Column("staff_id", Text, nullable=False),
    Column("code_hash", LargeBinary, nullable=False),
    Column("used_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("staff_id", "code_hash", name="staff_recovery_codes_pk"),
)

# A console session: Bearer cst_<id>.<secret> (SHA-256 of the secret kept). Ends at `idle_expires_at` (pushed on
# by every authenticated call, never past `expires_at`), at `expires_at`, or when revoked.
staff_sessions = Table(
    "staff_sessions",
    metadata,
    Column("session_id", Text, primary_key=True),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("staff_id", Text, nullable=False, index=True),
    Column("ip", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("idle_expires_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    Column("revoked_at", DateTime(timezone=True)),
)

# One-time links and tickets of the console: invitations, operator-issued password resets, and the short ticket
# between a right password and its TOTP code. Only SHA-256 of the secret; used once by a compare-and-set.
staff_links = Table(
    "staff_links",
    metadata,
    Column("link_id", Text, primary_key=True),
    Column("purpose", Text, nullable=False),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("staff_id", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    Column("used_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("purpose IN ('invitation', 'password_reset', 'totp_ticket')", name="staff_links_purpose_known"),
)

# Who did what in a console, when, from where, with the record before and after. Append-only.
console_audit_log = Table(
    "console_audit_log",
    metadata,
    Column("audit_id", Text, primary_key=True),  # aud_<uuid7>: sortable, the cursor of the audit pages
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("platform_id", Text, nullable=False),
    Column("merchant_id", Text),
    Column("actor_staff_id", Text),
    Column("actor_email", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=False, server_default=""),
    Column("before", JSONB),
    Column("after", JSONB),
    Column("ip", Text, nullable=False, server_default=""),
    Index("console_audit_log_merchant", "merchant_id", "audit_id"),
)

# Maker-checker refunds: above the merchant's threshold a refund waits for a second member's approval.
console_refund_requests = Table(
    "console_refund_requests",
    metadata,
    Column("request_id", Text, primary_key=True),
    Column("merchant_id", Text, nullable=False),
    Column("payment_id", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("status", Text, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("requested_by_email", Text, nullable=False),
    Column("decided_by", Text),
    Column("decided_at", DateTime(timezone=True)),
    Column("refund_id", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("amount_minor > 0", name="console_refund_requests_amount_positive"),
    CheckConstraint(
        "status IN ('pending', 'approved', 'rejected', 'executed')", name="console_refund_requests_status_known"
    ),
    Index("console_refund_requests_merchant", "merchant_id", "status", "request_id"),
)

console_merchant_settings = Table(
    "console_merchant_settings",
    metadata,
    Column("merchant_id", Text, primary_key=True),
    Column("refund_approval_threshold_minor", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("refund_approval_threshold_minor >= 0", name="console_merchant_settings_threshold_nonnegative"),
)
