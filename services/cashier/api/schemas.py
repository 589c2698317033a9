"""Request and response schemas of the cashier API (pydantic)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from libs.common.money import AmountMinor, Currency
from services.cashier.domain.payments import PaymentScene

OrderNo = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_\-|*.:]+$")]
ChannelName = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$")]
Url = Annotated[str, StringConstraints(min_length=8, max_length=1024, pattern=r"^https?://")]
METADATA_KEYS_MAX = 20


class PayerHints(BaseModel):
    model_config = ConfigDict(extra="forbid")

    openid: str | None = Field(default=None, max_length=128)
    client_type: str | None = Field(default=None, max_length=32, description="wechat, alipay, ios, android, …")
    client_ip: str | None = Field(default=None, max_length=64)
    user_id: str | None = Field(
        default=None, min_length=1, max_length=64, description="The paying user (required for scene=wallet)"
    )


class PaymentCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    merchant_order_no: OrderNo
    amount_minor: AmountMinor
    currency: Currency
    description: str = Field(min_length=1, max_length=128)
    scene: PaymentScene
    payer: PayerHints = Field(default_factory=PayerHints)
    expire_at: datetime | None = None
    notify_url: Url | None = None
    return_url: Url | None = None
    metadata: dict[str, Annotated[str, StringConstraints(max_length=500)]] = Field(
        default_factory=dict, max_length=METADATA_KEYS_MAX
    )
    preferred_channels: list[ChannelName] = Field(
        default_factory=list, max_length=10, description="Only these channels, in this order"
    )
    excluded_channels: list[ChannelName] = Field(default_factory=list, max_length=10)


class PaymentConfirmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(default=None, min_length=1, max_length=64,
                                description="dev/test only without a user identity token: the paying user")


class AttemptResponse(BaseModel):
    id: str
    seq: int
    channel: str
    route_id: str | None
    status: str
    out_trade_no: str
    channel_trade_no: str | None
    failure_code: str | None
    failure_message: str | None
    latency_ms: int | None
    created_at: datetime


class PaymentResponse(BaseModel):
    id: str
    merchant_id: str
    merchant_order_no: str
    status: str
    amount_minor: int
    currency: str
    description: str
    scene: str
    channel: str | None
    route_id: str | None
    fee_minor: int | None
    channel_trade_no: str | None
    payer_action: dict[str, Any] | None = Field(description="What the payer needs: QR code, JSAPI/app params, URL")
    expire_at: datetime
    succeeded_at: datetime | None
    closed_at: datetime | None
    failed_at: datetime | None
    failure_code: str | None
    failure_message: str | None
    late_success: bool = Field(description="Succeeded at the channel after we had closed or failed it")
    refunded_minor: int
    refundable_minor: int
    metadata: dict[str, Any]
    created_at: datetime
    attempts: list[AttemptResponse] = Field(default_factory=list)


class PaymentPage(BaseModel):
    data: list[PaymentResponse]
    next_cursor: str | None


class RefundCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_minor: AmountMinor
    reason: str | None = Field(default=None, max_length=256)
    merchant_refund_no: OrderNo | None = None


class RefundResponse(BaseModel):
    id: str
    payment_id: str
    merchant_refund_no: str | None
    status: str
    amount_minor: int
    currency: str
    reason: str | None
    channel: str
    channel_refund_no: str | None
    failure_code: str | None
    failure_message: str | None
    succeeded_at: datetime | None
    created_at: datetime


class RefundList(BaseModel):
    data: list[RefundResponse]


class WebhookAttemptResponse(BaseModel):
    attempt_no: int
    status_code: int | None
    error: str | None
    duration_ms: int
    attempted_at: datetime


class WebhookDeliveryResponse(BaseModel):
    id: str
    payment_id: str
    event_id: str
    event_type: str
    url: str
    status: str
    attempt_count: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    attempts: list[WebhookAttemptResponse] = Field(default_factory=list)


class WebhookDeliveryList(BaseModel):
    data: list[WebhookDeliveryResponse]


class MerchantUpdateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook_secret: str | None = Field(default=None, min_length=16, max_length=256)
    notify_url: Url | None = None


class MerchantResponse(BaseModel):
    merchant_id: str
    webhook_secret: str
    notify_url: str | None


class MerchantChannelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: int = Field(default=100, ge=0, le=10_000, description="Fallback order when routing is down; lower first")
    enabled: bool = True
    config: dict[str, Any] = Field(description="The connector's config: keys, base URL, timeouts")


class MerchantChannelResponse(BaseModel):
    merchant_id: str
    channel: str
    priority: int
    enabled: bool
    version: int
    config: dict[str, Any] = Field(description="Secrets redacted")
    notify_url: str
