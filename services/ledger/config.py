"""Settings of the ledger service: environment variables JUHE_LEDGER_*."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from libs.common.settings import ServiceSettings, service_settings_config

DEMO_IDENTITY_SECRET = "demo-identity-secret"  # the identity sandbox's default; production must set its own


class Settings(ServiceSettings):
    model_config = service_settings_config("ledger")

    service_name: str = "ledger"
    port: int = 8002
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/juhe_ledger"
    # The largest `limit` of every list (accounts, statements, history, entitlement changes): a statement
    # page used to allow 500, kept as the default.
    page_size_max: int = Field(default=500, ge=1, le=1000)

    # Write path (store/writer.py): how many transfers one database transaction may carry, how many may
    # wait (beyond that: 503 ledger_busy), how often a batch is retried after a race with another writer.
    write_batch_transfers_max: int = Field(default=2000, ge=1, le=20_000)
    write_queue_transfers_max: int = Field(default=50_000, ge=1, le=1_000_000)
    write_batch_attempts_max: int = Field(default=5, ge=1, le=20)
    write_lock_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    # Expiry of pending transfers (worker): how often to look, how many per round.
    expiry_interval_seconds: float = Field(default=1.0, gt=0, le=3600)
    expiry_batch_max: int = Field(default=500, ge=1, le=10_000)

    # Big wallet (domain/wallet, wallet/api/routes/*.py). The identity provider verifies KYC and calls back
    # signed with HMAC-SHA256 over "<timestamp>.<body>" with the shared secret.
    wallet_identity_base_url: str = "http://127.0.0.1:8105"
    wallet_identity_secret: SecretStr = SecretStr(DEMO_IDENTITY_SECRET)
    wallet_identity_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    wallet_callback_max_age_seconds: int = Field(default=300, ge=1, le=3600)
    wallet_public_base_url: str | None = None  # where the provider calls back; default: this request's base
    wallet_withdrawal_hold_seconds: int = Field(default=7 * 24 * 3600, ge=1, le=30 * 24 * 3600)
    wallet_points_per_yuan: int = Field(default=100, ge=1, le=10_000)
    # The fee of a withdrawal a user asks for itself (operators and services state theirs).
    wallet_withdrawal_fee_minor: int = Field(default=0, ge=0, le=100_000)
    # Top-up orders (docs/contracts.md §4, wallet top-up): the ledger places a `wallet_topup` payment with the cashier
    # for the platform's own collecting merchant, as the service identity `ledger`; unset → top-up orders answer 503.
    cashier_url: str | None = None
    wallet_topup_merchant_id: str | None = Field(default=None, min_length=1, max_length=64)
    cashier_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Worker: pending operations whose hold finished without the operation being told (expired, or a crash
    # between the writer's commit and the operation's) are brought up to date, with their event.
    wallet_reconcile_interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    wallet_reconcile_batch_max: int = Field(default=200, ge=1, le=10_000)
    # A withdrawal hold with no operation this long after it was written lost its request (a crash between
    # the two commits): the reconciler records it, so it is paid out (a live request takes milliseconds).
    wallet_orphan_after_seconds: float = Field(default=60.0, gt=0, le=86_400)
    # A top-up refund's hold this old whose refund the cashier does not know (it died between the ledger's answer
    # and its own commit, docs/marketing.md "Top-up refunds") is voided by the reconciler: the cash is the
    # holder's again in minutes, not when the hold runs out (14 days). Far above a request's duration.
    top_up_refund_orphan_after_seconds: float = Field(default=300.0, gt=0, le=86_400)

    # Where the launcher says the sandboxes are (it gives every service `sandbox_<name>_url`): the identity
    # sandbox stands for the identity provider unless `wallet_identity_base_url` is set explicitly.
    sandbox_identity_url: str | None = None
    # This service's own address as the launcher (or a deployment) publishes it: the KYC callback goes there
    # unless `wallet_public_base_url` is set (behind the gateway a request's base URL is not reachable for
    # the provider: the gateway authenticates everything but the channels' notify paths).
    public_base_url: str | None = None

    @model_validator(mode="after")
    def _identity_sandbox_when_not_set(self) -> Settings:
        if self.sandbox_identity_url and "wallet_identity_base_url" not in self.model_fields_set:
            self.wallet_identity_base_url = self.sandbox_identity_url
        if self.public_base_url and self.wallet_public_base_url is None:
            self.wallet_public_base_url = self.public_base_url
        return self

    @model_validator(mode="after")
    def _refuse_demo_identity_secret_in_production(self) -> Settings:
        if self.env == "prod" and self.wallet_identity_secret.get_secret_value() == DEMO_IDENTITY_SECRET:
            raise ValueError("refusing to start in prod with the demo wallet_identity_secret")
        return self
