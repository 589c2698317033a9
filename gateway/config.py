"""Settings of the gateway service: environment variables JUHE_GATEWAY_*."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator

from libs.common.settings import ServiceSettings, service_settings_config

# 32 bytes, base64: the AES-256-GCM key that seals merchants' HMAC and webhook secrets at rest.
DEMO_CREDENTIALS_KEY = "anVoZS1kZW1vLWNyZWRlbnRpYWxzLWtleS0zMmJ5dGU="
# The first-party identity of Juhe's web process (web/): the only caller that may redeem sign-in links.
DEMO_WEB_CLIENT_TOKEN = "juhe-demo-web-client-token-change-me"
# Pages served by the web process under the gateway's origin (one public address; docs/web.md).
DEFAULT_WEB_PREFIXES: tuple[str, ...] = ("/wallet", "/checkout", "/pay", "/static", "/console")
# The identity sandbox's default secret (merchant KYC at onboarding); production must set its own.
DEMO_IDENTITY_SECRET = "demo-identity-secret"

# Public path prefix → the service that serves it (longest prefix wins, on a "/" boundary).
DEFAULT_ROUTES: dict[str, str] = {
    "/v1/payments": "cashier",
    "/v1/refunds": "cashier",
    "/v1/webhook-deliveries": "cashier",
    "/v1/webhook-endpoints": "cashier",
    "/v1/events": "cashier",
    "/v1/checkout": "cashier",
    "/v1/payment-links": "cashier",
    "/v1/notify": "cashier",
    "/v1/admin/merchants": "cashier",
    "/v1/accounts": "ledger",
    "/v1/transfers": "ledger",
    "/v1/holds": "ledger",
    "/v1/wallet": "ledger",
    "/v1/entitlements": "ledger",
    "/v1/kyc": "ledger",
    "/v1/migrations": "migration",
    "/v1/channel-routes": "routing",
    "/v1/contracts": "routing",
    "/v1/fee-rates": "routing",
    "/v1/rules": "routing",
    "/v1/routing-settings": "routing",
    "/v1/audit": "routing",
    "/v1/merchant-profiles": "routing",
    "/v1/special-rate-programmes": "routing",
    "/v1/special-rate-applications": "routing",
    "/v1/special-rate-savings": "routing",
    "/v1/routing-simulations": "routing",
    "/v1/settlement": "settlement",
    "/v1/payouts": "settlement",
    "/v1/statements": "settlement",
    "/v1/notify/bank": "settlement",
    "/v1/coupons": "marketing",
    "/v1/coupon-stocks": "marketing",
    "/v1/points": "marketing",
    "/v1/campaigns": "marketing",
    "/v1/marketing": "marketing",
}

# Platform operators only. Ledger and routing APIs are here because those services do not filter by the
# caller's merchant (yet): open a prefix to merchants only once its service scopes every query.
DEFAULT_PLATFORM_ONLY_PREFIXES: tuple[str, ...] = (
    "/v1/platform",
    "/v1/admin",
    "/v1/accounts",
    "/v1/transfers",
    "/v1/holds",
    "/v1/entitlements",
    "/v1/kyc",
    "/v1/migrations",
    "/v1/channel-routes",
    "/v1/contracts",
    "/v1/fee-rates",
    "/v1/rules",
    "/v1/routing-settings",
    "/v1/audit",
    "/v1/merchant-profiles",
    "/v1/special-rate-programmes",
    "/v1/special-rate-applications",
    "/v1/special-rate-savings",
    "/v1/routing-simulations",
    "/v1/settlement",
)


class Settings(ServiceSettings):
    model_config = service_settings_config("gateway")

    service_name: str = "gateway"
    port: int = 8000
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/juhe_gateway"

    # Upstreams (JUHE_GATEWAY_CASHIER_URL, …).
    cashier_url: str = "http://127.0.0.1:8001"
    ledger_url: str = "http://127.0.0.1:8002"
    routing_url: str = "http://127.0.0.1:8003"
    settlement_url: str = "http://127.0.0.1:8004"
    marketing_url: str = "http://127.0.0.1:8005"
    migration_url: str = "http://127.0.0.1:8007"
    # The web process (pages) and the prefixes forwarded to it as they are (cookies included, no identity).
    web_url: str = "http://127.0.0.1:8006"
    web_prefixes: tuple[str, ...] = DEFAULT_WEB_PREFIXES
    web_client_token: SecretStr = SecretStr(DEMO_WEB_CLIENT_TOKEN)
    # This gateway's public origin: sign-in links point at it.
    public_base_url: str = "http://127.0.0.1:8000"
    routes: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_ROUTES))
    # Service-to-service only (cashier → routing decide): never reachable from outside.
    internal_prefixes: tuple[str, ...] = ("/v1/route", "/v1/internal")
    platform_only_prefixes: tuple[str, ...] = DEFAULT_PLATFORM_ONLY_PREFIXES
    # Forwarded without gateway authentication: channels' signed notifications, verified by the cashier, and the
    # hosted checkout page's calls, whose 256-bit page token in the path is the credential (docs/checkout.md).
    # Rate-limited per client address; never carry an identity.
    passthrough_prefixes: tuple[str, ...] = ("/v1/notify", "/v1/checkout/pages")
    # End-user tokens (My Wallet, checkout frontends) may call only these.
    user_prefixes: tuple[str, ...] = ("/v1/wallet", "/v1/checkout", "/v1/me", "/v1/marketing/me")

    upstream_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    upstream_connect_retries_max: int = Field(default=2, ge=0, le=5)
    # The gateway's own asyncpg pool for the per-request guard statements (nonce, rate, idempotency).
    guard_connections_max: int = Field(default=20, ge=1, le=200)
    upstream_connections_max: int = Field(default=100, ge=1, le=1000)
    upstream_response_bytes_max: int = Field(default=16_777_216, ge=65_536, le=268_435_456)
    internal_token_ttl_seconds: int = Field(default=60, ge=5, le=600)
    body_size_max_bytes: int = Field(default=1_048_576, ge=1024, le=16_777_216)

    # The sealing key ring (libs/common/sealing.py): secrets at rest and stored idempotent responses are sealed
    # with the current key, named by its id; retired keys (id -> key) only open what they sealed, until it is
    # re-sealed or expires (docs/operations.md §Sealing keys).
    credentials_encryption_key: SecretStr = SecretStr(DEMO_CREDENTIALS_KEY)
    credentials_encryption_key_id: str = Field(default="k1", min_length=1, max_length=32)
    credentials_retired_keys: dict[str, SecretStr] = Field(default_factory=dict)
    signature_window_seconds: int = Field(default=300, ge=30, le=900)
    # How long a looked-up key's material stays cached in one replica. Not a revocation delay: every request's
    # guard statement checks the key's status and expiry in the database.
    key_cache_ttl_seconds: float = Field(default=30.0, ge=0, le=300)
    user_token_ttl_seconds_max: int = Field(default=3600, ge=60, le=7 * 86400)
    # My Wallet: a sign-in link lives minutes and is used once; the session it opens is a user token.
    wallet_sign_in_link_seconds: int = Field(default=300, ge=30, le=900)
    wallet_session_seconds: int = Field(default=1800, ge=300, le=86400)
    # Per browser address per window: redeeming sign-in links; per user per window: payment PIN checks.
    wallet_sign_in_rate_max: int = Field(default=30, ge=1, le=10_000)
    payment_pin_rate_max: int = Field(default=30, ge=1, le=10_000)
    payment_pin_lockout_seconds: int = Field(default=86400, ge=60, le=30 * 86400)
    # Console staff (flows/staff.py, docs/consoles.md): a session ends after `idle` seconds without a request and
    # `absolute` seconds after sign-in; 5 failed sign-ins in a row lock the account for `lockout`; sign-ins are also
    # counted per browser address and per e-mail; invitations and operator-issued reset links are used once.
    staff_session_idle_seconds: int = Field(default=900, ge=60, le=86400)
    staff_session_absolute_seconds: int = Field(default=43200, ge=300, le=7 * 86400)
    staff_lockout_seconds: int = Field(default=900, ge=60, le=86400)
    staff_sign_in_rate_max: int = Field(default=30, ge=1, le=10_000)
    staff_invitation_seconds: int = Field(default=7 * 86400, ge=300, le=30 * 86400)
    staff_password_reset_seconds: int = Field(default=3600, ge=300, le=86400)
    # Refunds of at least this much wait for a second member's approval until the merchant sets its own threshold.
    staff_refund_approval_threshold_minor: int = Field(default=100_000, ge=0)
    key_rotation_overlap_seconds_max: int = Field(default=7 * 86400, ge=0, le=90 * 86400)

    idempotency_ttl_seconds: int = Field(default=86400, ge=60, le=7 * 86400)
    # The lease of an in-progress key: renewed every third of it while its request is running, so a long
    # request keeps its key; a key whose gateway died mid-request (no renewal) may be taken over by a
    # retry of the same request this many seconds later.
    idempotency_lock_seconds: float = Field(default=5.0, ge=1, le=60)
    idempotency_response_bytes_max: int = Field(default=1_048_576, ge=1024, le=16_777_216)

    rate_limit_window_seconds: int = Field(default=60, ge=1, le=3600)
    rate_limit_read_max: int = Field(default=6000, ge=1)
    rate_limit_write_max: int = Field(default=1200, ge=1)
    rate_limit_admin_max: int = Field(default=300, ge=1)

    openapi_refresh_seconds: float = Field(default=60.0, gt=0, le=3600)
    openapi_fetch_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    prune_interval_seconds: float = Field(default=30.0, gt=0, le=3600)
    prune_batch_max: int = Field(default=5000, ge=1, le=100_000)

    # Merchant onboarding (gateway/flows/onboarding.py, docs/onboarding.md): the identity provider that checks a
    # merchant's KYC (the identity sandbox unless `identity_base_url` is set), how long the creating request
    # drives the steps itself before answering `processing`, and the worker that finishes (or retries) the rest.
    identity_base_url: str = "http://127.0.0.1:8105"
    identity_secret: SecretStr = SecretStr(DEMO_IDENTITY_SECRET)
    identity_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    sandbox_identity_url: str | None = None  # given by the launcher to every service
    onboarding_inline_seconds: float = Field(default=20.0, ge=0, le=60)
    onboarding_lease_seconds: float = Field(default=60.0, ge=5, le=600)
    onboarding_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    onboarding_batch_max: int = Field(default=20, ge=1, le=1000)

    def service_urls(self) -> dict[str, str]:
        return {
            "cashier": self.cashier_url,
            "ledger": self.ledger_url,
            "routing": self.routing_url,
            "settlement": self.settlement_url,
            "marketing": self.marketing_url,
            "migration": self.migration_url,
        }

    @model_validator(mode="after")
    def _identity_sandbox_when_not_set(self) -> Self:
        if self.sandbox_identity_url and "identity_base_url" not in self.model_fields_set:
            self.identity_base_url = self.sandbox_identity_url
        return self

    @model_validator(mode="after")
    def _refuse_demo_credentials_key_in_production(self) -> Self:
        if self.env == "prod" and self.credentials_encryption_key.get_secret_value() == DEMO_CREDENTIALS_KEY:
            raise ValueError("refusing to start in prod with the demo credentials_encryption_key")
        if self.env == "prod" and any(
            key.get_secret_value() == DEMO_CREDENTIALS_KEY for key in self.credentials_retired_keys.values()
        ):
            raise ValueError("refusing to start in prod with the demo key among credentials_retired_keys")
        if self.env == "prod" and self.web_client_token.get_secret_value() == DEMO_WEB_CLIENT_TOKEN:
            raise ValueError("refusing to start in prod with the demo web_client_token")
        if self.env == "prod" and self.identity_secret.get_secret_value() == DEMO_IDENTITY_SECRET:
            # Onboarding's KYC verdicts would be forgeable by anyone who read the repository.
            raise ValueError("refusing to start in prod with the demo identity_secret")
        return self
