"""Settings of the cashier service: environment variables JUHE_CASHIER_*."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from libs.common.settings import ServiceSettings, service_settings_config
from services.cashier.domain.webhooks import DEFAULT_RETRY_SCHEDULE_SECONDS

# 32 bytes, base64: the demo AES-256-GCM key that seals webhook signing secrets at rest; production refuses it.
DEMO_SECRETS_KEY = "anVoZS1kZW1vLWNhc2hpZXItc2VjcmV0cy1rZXktMzI="


class Settings(ServiceSettings):
    model_config = service_settings_config("cashier")

    # The sealing key ring (libs/common/sealing.py): merchants' and webhook endpoints' signing secrets are sealed
    # with the current key, named by its id; retired keys (id -> key) only open what they sealed until it is
    # re-sealed (docs/operations.md §Sealing keys). Migration 0023 seals the rows written before it with it.
    secrets_encryption_key: SecretStr = SecretStr(DEMO_SECRETS_KEY)
    secrets_encryption_key_id: str = Field(default="k1", min_length=1, max_length=32)
    secrets_retired_keys: dict[str, SecretStr] = Field(default_factory=dict)

    service_name: str = "cashier"
    port: int = 8001
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/juhe_cashier"

    # Where channels send their async notifications: `<public_base_url>/v1/notify/<channel>/<merchant>`.
    public_base_url: str = "http://127.0.0.1:8001"

    # Routing service (`POST /v1/route`). Empty, unreachable or failing → the merchant's own channel order.
    routing_url: str = ""
    routing_timeout_seconds: float = Field(default=2.0, gt=0, le=30)

    # The gateway (`GET /internal/v1/merchants/{id}/webhook-secret`): the webhook secret it returned at the
    # merchant's creation is the one the cashier signs with (flows/merchants.py). Empty = the cashier
    # mints its own (run alone, without a gateway).
    gateway_url: str = ""
    gateway_timeout_seconds: float = Field(default=3.0, gt=0, le=30)
    # The origin payers open the hosted checkout at (`<checkout_base_url>/checkout/<token>` in a session's
    # `url`): the gateway's public address. Empty = `gateway_url` (right when that is the public address too),
    # else `public_base_url`. Set it when the cashier reaches the gateway at an internal address.
    checkout_base_url: str = Field(default="", pattern=r"^(https?://[^/?#\s]+/?)?$")

    # Test mode (docs/test-mode.md, domain/modes.py): the hosts (`host` or `host:port`) whose channel endpoints are
    # sandboxes. Empty: the channels' public sandboxes, plus loopback in dev/test (where the local sandboxes run).
    sandbox_hosts: list[str] = Field(default_factory=list)
    # The mode of a payment whose caller's identity carries none (a service, such as the ledger asking for a
    # wallet top-up; the dev header). Empty: live in prod, test in dev/test.
    default_mode: Literal["test", "live", ""] = ""

    # Payment expiry when the merchant gives none, and the furthest it may be.
    payment_expiry_default_seconds: int = Field(default=30 * 60, ge=60, le=24 * 3600)
    payment_expiry_max_seconds: int = Field(default=24 * 3600, ge=60, le=15 * 24 * 3600)
    attempts_per_payment_max: int = Field(default=5, ge=1, le=20)

    # Status polling of processing attempts and pending refunds: first query after `initial`, then
    # doubling up to `max`, at most `count_max` queries (expiry takes over after that).
    poll_initial_seconds: float = Field(default=5.0, gt=0, le=3600)
    poll_backoff_max_seconds: float = Field(default=120.0, gt=0, le=24 * 3600)
    poll_count_max: int = Field(default=30, ge=1, le=1000)
    poll_interval_seconds: float = Field(default=1.0, gt=0, le=60)  # how often the loop looks for due work
    poll_batch_max: int = Field(default=50, ge=1, le=1000)
    poll_lease_seconds: float = Field(default=30.0, gt=0, le=3600)  # a claimed row is not re-claimed before
    # Re-drive of attempts left `created` (the process or database died between writing the attempt and
    # recording the channel's answer). An attempt's driver holds it for `redrive_grace_seconds` and bounds
    # its prepay call to 60 % of that (so its answer is written before the lease ends); past it the worker,
    # or the client retrying the create, prepays again with the same out_trade_no or fails over. A retried
    # create waits at most `redrive_wait_seconds` for a lease held by someone else, then answers 503
    # channel_unavailable (retryable).
    redrive_grace_seconds: float = Field(default=10.0, ge=1, le=600)
    redrive_wait_seconds: float = Field(default=5.0, gt=0, le=60)
    expiry_interval_seconds: float = Field(default=2.0, gt=0, le=300)
    # 付款码: how long the payer may take over the password step before the order is reversed (WeChat) /
    # cancelled (Alipay) — the channels advise about a minute — and the longest pause between two status
    # queries meanwhile (the backoff above, capped by this, and never past the deadline).
    payment_code_deadline_seconds: float = Field(default=60.0, ge=5, le=300)
    payment_code_poll_max_seconds: float = Field(default=5.0, gt=0, le=60)
    expiry_batch_max: int = Field(default=50, ge=1, le=1000)

    # Merchant webhooks.
    webhook_retry_schedule_seconds: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE_SECONDS
    webhook_retry_scale: float = Field(default=1.0, gt=0, le=10)  # 0.001 in tests compresses ~24 h to ~86 s
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_interval_seconds: float = Field(default=0.5, gt=0, le=60)
    webhook_batch_max: int = Field(default=50, ge=1, le=1000)
    webhook_concurrency_max: int = Field(default=10, ge=1, le=200)
    # How long a connection to a webhook target stays open for the next delivery (flows/webhook_targets.py; 0: a new
    # connection per delivery). Under the 5 s idle timeout of common servers (uvicorn, Node), so the receiver rarely
    # closes a connection just as a delivery reuses it.
    webhook_keepalive_seconds: float = Field(default=4.0, ge=0, le=60)
    # The merchant event log behind GET /v1/events keeps events this many days; the worker deletes older ones
    # in batches (flows/webhook_endpoints.py purge_expired_events). Longer than the ~24 h of webhook retries.
    events_retention_days: int = Field(default=90, ge=2, le=3650)
    events_purge_interval_seconds: float = Field(default=600.0, gt=0, le=86_400)
    events_purge_batch_max: int = Field(default=1000, ge=1, le=100_000)
    # Webhook targets (flows/webhook_targets.py): https only and public addresses only, checked on every
    # address the host resolves to at delivery time. Dev/test flags, both off in production:
    webhook_allow_http: bool = False  # JUHE_CASHIER_WEBHOOK_ALLOW_HTTP: plain http targets too
    webhook_allow_loopback: bool = False  # JUHE_CASHIER_WEBHOOK_ALLOW_LOOPBACK: 127.0.0.0/8 and ::1 too
    webhook_response_max_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)  # read at most this

    # The ledger (the wallet channel's institution, docs/ledger.md): `scene=wallet` payments hold, post and void
    # transfers there. Empty = no wallet payments.
    ledger_url: str = ""
    ledger_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # What the platform charges merchants per payment (docs/ledger.md §3.1 `platform_fee_income`), fixed
    # on the payment at creation and carried by its events: round_half_up(amount × bps / 10000).
    platform_fee_rate_bps: int = Field(default=0, ge=0, le=10_000)

    # Settlement (`POST /v1/internal/split-checks`): a payment with an explicit `split` is created only
    # after settlement accepts the split. Empty = such payments are refused (503), never created unchecked.
    settlement_url: str = ""
    settlement_timeout_seconds: float = Field(default=3.0, gt=0, le=30)

    # Marketing (`POST /v1/internal/marketing/locks`): a payment with a coupon is created only after marketing
    # locks the coupon and prices the discount. Empty = such payments are refused (503), never discounted
    # unchecked. The lock lasts the payment's life plus `coupon_lock_margin_seconds` (marketing caps it).
    marketing_url: str = ""
    marketing_timeout_seconds: float = Field(default=3.0, gt=0, le=30)
    coupon_lock_margin_seconds: int = Field(default=300, ge=0, le=3600)
    # A coupon locked for a payment this cashier never created (the create died between lock and insert) is
    # released by a later create of that coupon once the lock is this old (else it runs out at marketing).
    coupon_orphan_lock_seconds: int = Field(default=60, ge=0, le=3600)

    page_size_max: int = Field(default=100, ge=1, le=1000)

    @model_validator(mode="after")
    def _refuse_demo_secrets_key_in_production(self) -> Self:
        keys = [self.secrets_encryption_key, *self.secrets_retired_keys.values()]
        if self.env == "prod" and any(key.get_secret_value() == DEMO_SECRETS_KEY for key in keys):
            # Every webhook signing secret would open with a key anyone can read in the repository.
            raise ValueError("refusing to start in prod with the demo secrets_encryption_key")
        return self
