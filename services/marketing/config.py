"""Settings of the marketing service: environment variables JUHE_MARKETING_*."""

from __future__ import annotations

from pydantic import Field

from libs.common.settings import ServiceSettings, service_settings_config


class Settings(ServiceSettings):
    model_config = service_settings_config("marketing")

    service_name: str = "marketing"
    port: int = 8005
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/juhe_marketing"

    # Per-day limits count claims by this zone's calendar day (users and merchants live on China time).
    day_timezone: str = "Asia/Shanghai"
    # A coupon locked for a payment is released by itself after this long unless confirmed or released;
    # the cashier may ask for less (never more). Longer than a payment's own expiry by default.
    lock_seconds_default: int = Field(default=900, ge=10, le=86_400)
    lock_seconds_max: int = Field(default=3600, ge=10, le=86_400)
    lock_sweep_interval_seconds: float = Field(default=5.0, gt=0, le=300)
    lock_sweep_batch_max: int = Field(default=200, ge=1, le=5000)
    # A merchant's staff may undo an in-store redemption for this long after it.
    in_store_undo_seconds: int = Field(default=600, ge=0, le=7 * 86_400)
    # Bulk issue: users per request, users per worker round.
    bulk_issue_users_max: int = Field(default=10_000, ge=1, le=100_000)
    bulk_issue_batch_max: int = Field(default=200, ge=1, le=5000)
    bulk_issue_interval_seconds: float = Field(default=1.0, gt=0, le=300)
    # Points lots past their expiry are swept this often (at most this many lots a round).
    points_expiry_interval_seconds: float = Field(default=60.0, gt=0, le=3600)
    points_expiry_batch_max: int = Field(default=500, ge=1, le=5000)
    # Top-up promotions apply only to `wallet_topup` payments of the platform's collecting merchant (the ledger's
    # JUHE_LEDGER_WALLET_TOPUP_MERCHANT_ID): another merchant's "top-up" credits no wallet, so it earns no bonus.
    # Unset: no top-up earns a bonus.
    wallet_topup_merchant_id: str | None = Field(default=None, min_length=1, max_length=64)
    # Top-up bonuses past their expiry are swept this often (at most this many a round).
    topup_expiry_interval_seconds: float = Field(default=60.0, gt=0, le=3600)
    topup_expiry_batch_max: int = Field(default=500, ge=1, le=5000)
    # Channel coupon mirroring (docs/marketing.md "Channel coupons"): the cashier calls the channels for marketing
    # (it holds the channel credentials). Empty: channel stocks cannot start, nor their coupons be sent (503).
    cashier_url: str = ""
    cashier_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    # The cashier merchant whose channel accounts create the platform's own channel stocks (a merchant's campaign
    # uses the merchant's own accounts). Unset: only merchants' campaigns can have channel stocks.
    channel_account_merchant_id: str | None = Field(default=None, min_length=1, max_length=64)
    # Coupons whose send to the channel did not get an answer are sent again this often (same out_request_no).
    channel_send_interval_seconds: float = Field(default=5.0, gt=0, le=600)
    channel_send_batch_max: int = Field(default=100, ge=1, le=5000)
    # The daily comparison asks the channel about at most this many coupons (beyond: `complete: false`).
    channel_comparison_coupons_max: int = Field(default=500, ge=1, le=20_000)
    # The largest `limit` a list endpoint accepts (a larger one is 422 validation_failed).
    page_size_max: int = Field(default=200, ge=1, le=1000)
