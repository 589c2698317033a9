"""Settings of the settlement service: environment variables JUHE_SETTLEMENT_*."""

from __future__ import annotations

from pydantic import Field, SecretStr

from libs.common.settings import ServiceSettings, service_settings_config


class Settings(ServiceSettings):
    model_config = service_settings_config("settlement")

    service_name: str = "settlement"
    port: int = 8004
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/juhe_settlement"

    ledger_url: str = "http://127.0.0.1:8002"
    cashier_url: str = "http://127.0.0.1:8001"
    http_timeout_seconds: float = 10.0
    split_interval_seconds: float = 1.0
    split_batch_max: int = 100
    split_attempts_max: int = 20
    split_retry_base_seconds: float = 2.0
    split_lease_seconds: float = 30.0
    settlement_interval_seconds: float = 60.0
    settlement_holders_per_run_max: int = 1000
    # The bank that executes payouts (sandboxes/bank protocol) and where it sends its callbacks.
    bank_url: str = "http://127.0.0.1:8104"
    bank_client_id: str = ""
    bank_secret: SecretStr = SecretStr("")
    bank_signature_skew_seconds_max: int = 300
    public_base_url: str = "http://127.0.0.1:8004"
    payout_interval_seconds: float = 2.0
    payout_poll_seconds: float = 30.0
    payout_batch_max: int = 100
    # A payout still not final after this many steps ends `failed` (attempts_exhausted), its funds released.
    payout_attempts_max: int = Field(default=50, ge=1, le=1000)
    # Maker-checker: a payout of at least this much (minor units) waits for a platform operator's approval
    # (`pending_approval`); 0 = no payout waits.
    payout_approval_threshold_minor: int = Field(default=0, ge=0)
    # Channel rails (wechat_change, alipay_account) go through the cashier with the channel accounts of this
    # platform merchant; a WeChat transfer the user has not confirmed after `transfer_confirm_seconds` is
    # cancelled (before WeChat's own 24 h expiry and well before the wallet hold's), and the money goes back.
    channel_payout_merchant_id: str = Field(default="mch_wallet", min_length=1, max_length=64)
    transfer_confirm_seconds: float = Field(default=23 * 3600, gt=0, le=24 * 3600)
    # Channel profit sharing (docs/contracts.md §2): the cashier's internal endpoint, polled while the channel works.
    profit_sharing_interval_seconds: float = 2.0
    profit_sharing_poll_seconds: float = 5.0
    profit_sharing_retry_max_seconds: float = 300.0
    profit_sharing_batch_max: int = 100
    # The largest `limit` any list endpoint accepts (a larger one is 422 validation_failed).
    page_size_max: int = Field(default=500, ge=1, le=1000)
    # The settlement ↔ ledger check (docs/consistency.md): how often the worker runs it, and how long it
    # waits before the confirming second reading when the first one shows differences.
    consistency_interval_seconds: float = Field(default=60.0, ge=1.0, le=3600.0)
    consistency_confirm_seconds: float = Field(default=2.0, ge=0.0, le=60.0)
