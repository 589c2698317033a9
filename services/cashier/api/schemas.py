"""Request and response schemas of the cashier API (pydantic)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from libs.common.metadata import Metadata
from libs.common.modes import Mode
from libs.common.money import AmountMinor, Currency
from libs.common.paging import ListPage
from services.cashier.domain.payments import (
    SPLIT_ENTRIES_MAX,
    PaymentPurpose,
    PaymentScene,
    payment_code_problem,
    purpose_problem,
    split_problem,
)

OrderNo = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_\-|*.:]+$")]
ChannelName = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$")]
AuthCode = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z]+$")]
Url = Annotated[str, StringConstraints(min_length=8, max_length=1024, pattern=r"^https?://")]


class PayerHints(BaseModel):
    model_config = ConfigDict(extra="forbid")

    openid: str | None = Field(
        default=None, max_length=128, description="WeChat JSAPI / mini-program payer (from the WeChat OAuth)"
    )
    buyer_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Alipay JSAPI / mini-program buyer (user_id 2088… from "
        "alipay.system.oauth.token, or a buyer_open_id)",
    )
    client_type: str | None = Field(default=None, max_length=32, description="wechat, alipay, ios, android, …")
    client_ip: str | None = Field(default=None, max_length=64)
    user_id: str | None = Field(
        default=None, min_length=1, max_length=64, description="The paying user (required for scene=wallet)"
    )


class SplitLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    receiver_id: str = Field(min_length=1, max_length=64, description="A settlement receiver id")
    amount_minor: AmountMinor


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
    metadata: Metadata = Field(default_factory=dict)
    preferred_channels: list[ChannelName] = Field(
        default_factory=list, max_length=10, description="Only these channels, in this order"
    )
    excluded_channels: list[ChannelName] = Field(default_factory=list, max_length=10)
    purpose: PaymentPurpose = PaymentPurpose.PAYMENT
    wallet_holder_id: str | None = Field(
        default=None, min_length=1, max_length=64, description="wallet_topup only: the user whose wallet is credited"
    )
    split: list[SplitLine] | None = Field(
        default=None,
        min_length=1,
        max_length=SPLIT_ENTRIES_MAX,
        description="Explicit split, checked against the merchant's split rule by settlement at creation",
    )
    profit_sharing: bool = Field(default=False, description="Ask the channel to freeze the funds for profit sharing")
    auth_code: AuthCode | None = Field(
        default=None,
        description="scene payment_code only: the code the payer shows, as scanned (its prefix "
        "decides the channel: WeChat 10-15, Alipay 25-30)",
    )
    coupon_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="A coupon of the payer (payer.user_id) to redeem: marketing locks it and prices the discount; "
        "the channel is asked for the discounted amount (payable_minor)",
    )
    coupon_code: str | None = Field(
        default=None,
        min_length=4,
        max_length=64,
        pattern=r"^[A-Za-z0-9_\-]+$",
        description="The same coupon named by its code (what the user types at checkout: 16 digits when Juhe issued "
        "it, the platform's own code when it was migrated); not with coupon_id",
    )

    @model_validator(mode="after")
    def _coherent(self) -> PaymentCreateRequest:
        problem = payment_code_problem(self.scene, auth_code=self.auth_code, profit_sharing=self.profit_sharing)
        problem = problem or purpose_problem(
            self.purpose, wallet_holder_id=self.wallet_holder_id, scene=self.scene, has_split=self.split is not None
        )
        if problem is None and self.coupon_id is not None and self.coupon_code is not None:
            problem = "give coupon_id or coupon_code, not both"
        if problem is None and self.split is not None:
            problem = split_problem(self.amount_minor, [(line.receiver_id, line.amount_minor) for line in self.split])
        if problem is not None:
            raise ValueError(problem)
        return self


class PaymentConfirmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="dev/test only without a user identity token: the paying user",
    )


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
    purpose: str
    wallet_holder_id: str | None
    split: list[dict[str, Any]] | None
    profit_sharing: bool
    payable_minor: int = Field(description="What the payer pays at the channel: amount_minor less discount_minor")
    discount_minor: int = Field(description="A redeemed coupon's discount (0 without one)")
    discount: dict[str, Any] | None = Field(
        description="The coupon redeemed: {coupon_id, redemption_id, stock_id, campaign_id, party, "
        "platform_share_bps, platform_minor, merchant_minor, channel_minor}"
    )
    channel_discount: dict[str, Any] | None = Field(
        default=None,
        description="The channel's own coupons the payer used (WeChat promotion_detail, Alipay voucher_detail_list): "
        "{discount_minor, channel_minor, merchant_minor, unsettled_minor, coupons}; null without (docs/events.md)",
    )
    wallet_split: dict[str, int] | None = Field(
        default=None,
        description="A succeeded wallet payment's parts: {cash_minor, bonus_minor}, from the payer's cash balance "
        "and from a top-up bonus (docs/ledger.md §3.2); null for other channels and before success",
    )
    livemode: bool = Field(description="Made with a live key (real money); false: a test payment at a sandbox")
    created_at: datetime
    attempts: list[AttemptResponse] = Field(default_factory=list)


class PaymentPage(ListPage[PaymentResponse]):
    pass


class PaymentAggregateRow(BaseModel):
    day: date = Field(description="The local day (in `timezone`) the payments were created")
    channel: str | None
    status: str
    currency: str
    count: int
    amount_minor: int
    refunded_minor: int = Field(description="Succeeded refunds of these payments")
    fee_minor: int = Field(description="What their routes quoted (the channel's cost)")
    platform_fee_minor: int = Field(description="What the platform charges the merchant for them")


class PaymentAggregates(BaseModel):
    """Counts and sums of a period's payments by day, channel, status and currency (not a list: one answer)."""

    timezone: str
    created_from: datetime
    created_to: datetime
    data: list[PaymentAggregateRow]


class RefundCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_minor: AmountMinor
    reason: str | None = Field(default=None, max_length=256)
    merchant_refund_no: OrderNo | None = None


class RefundResponse(BaseModel):
    id: str
    payment_id: str
    livemode: bool = Field(description="Its payment's mode: true for a live payment's refund")
    merchant_refund_no: str | None
    status: str
    amount_minor: int
    currency: str
    reason: str | None
    channel: str
    channel_refund_no: str | None
    wallet_split: dict[str, int] | None = Field(
        default=None,
        description="A succeeded wallet refund's parts: {cash_minor, bonus_minor, platform_minor}, given back to "
        "the payer's cash, to the bonus, or to the platform for a bonus that ended since (docs/ledger.md §3.2)",
    )
    failure_code: str | None
    failure_message: str | None
    succeeded_at: datetime | None
    created_at: datetime


class RefundList(ListPage[RefundResponse]):
    """Oldest first."""


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
    endpoint_id: str | None = Field(description="The webhook endpoint it goes to; null for a notify_url delivery")
    url: str
    status: str
    attempt_count: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    attempts: list[WebhookAttemptResponse] = Field(default_factory=list)


class WebhookDeliveryList(ListPage[WebhookDeliveryResponse]):
    """In delivery order."""


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
    mode: Mode | None = Field(
        default=None,
        description="test (only sandboxes; serves test keys) or live (only real channels; serves live keys). "
        "Default: test when every endpoint of the config is a sandbox, else live; a contradiction is 422 "
        "channel_mode_mismatch (docs/test-mode.md)",
    )


class MerchantChannelPatchRequest(BaseModel):
    """Switch a configuration on or off or move it in the fallback order without resending its secrets."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode = Field(description="Which of the channel's configurations (a test and a live one may exist)")
    version: int = Field(
        ge=1,
        le=2**31 - 1,
        description="The version last read (an INTEGER column): a configuration changed since is 409",
    )
    enabled: bool | None = None
    priority: int | None = Field(default=None, ge=0, le=10_000)


class MerchantChannelResponse(BaseModel):
    merchant_id: str
    channel: str
    priority: int
    enabled: bool
    mode: Mode
    version: int
    config: dict[str, Any] = Field(description="Secrets redacted")
    notify_url: str


ShareOrderNo = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
SHARE_RECEIVERS_MAX = 50  # WeChat's limit per order; Alipay's royalty_parameters limit is the same


class ProfitSharingReceiver(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(
        min_length=1,
        max_length=32,
        description="The channel's receiver type: WeChat MERCHANT_ID | PERSONAL_OPENID; Alipay userId | loginName",
    )
    account: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, min_length=1, max_length=128)
    amount_minor: AmountMinor
    description: str = Field(min_length=1, max_length=80)


class ProfitSharingCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_no: ShareOrderNo
    receivers: list[ProfitSharingReceiver] = Field(min_length=1, max_length=SHARE_RECEIVERS_MAX)
    finish: bool = Field(description="Release what is not shared to the merchant (the order's last split)")

    @model_validator(mode="after")
    def _unique_receivers(self) -> ProfitSharingCreateRequest:
        keys = [(r.type, r.account) for r in self.receivers]
        if len(set(keys)) != len(keys):
            raise ValueError("each receiver (type, account) may appear once per order")
        return self


class ProfitSharingReceiverResponse(BaseModel):
    account: str
    amount_minor: int
    status: str
    fail_reason: str | None


class ProfitSharingResponse(BaseModel):
    payment_id: str
    order_no: str
    channel: str
    status: str = Field(description="processing | succeeded | failed")
    channel_order_id: str | None
    receivers: list[ProfitSharingReceiverResponse]


class TransferCreateRequest(BaseModel):
    """Settlement → cashier: pay `amount_minor` to a user's WeChat change (openid) or Alipay account."""

    model_config = ConfigDict(extra="forbid")

    merchant_id: str = Field(min_length=1, max_length=64, description="Whose channel account pays")
    channel: Annotated[str, StringConstraints(pattern=r"^(wechatpay|alipay)$")]
    out_transfer_no: Annotated[str, StringConstraints(min_length=5, max_length=32, pattern=r"^[0-9A-Za-z_]+$")]
    amount_minor: AmountMinor
    currency: Currency
    payee: str = Field(min_length=1, max_length=128, description="openid (WeChat) or Alipay user id / logon id")
    payee_type: str = Field(
        default="openid",
        max_length=32,
        description="wechatpay: openid; alipay: ALIPAY_USER_ID | ALIPAY_LOGON_ID | ALIPAY_OPEN_ID",
    )
    payee_name: str | None = Field(default=None, min_length=1, max_length=64)
    remark: str = Field(min_length=1, max_length=128)
    scene_id: str | None = Field(default=None, max_length=16, description="WeChat transfer_scene_id")
    livemode: bool | None = Field(
        default=None,
        description="The mode of the money moved: only that mode's configuration of the paying merchant pays "
        "(absent: its only configuration of the channel)",
    )


class TransferResponse(BaseModel):
    channel: str
    out_transfer_no: str
    status: str = Field(description="waiting_user | pending | succeeded | failed | cancelled | not_found")
    channel_transfer_no: str | None
    amount_minor: int | None
    user_action: dict[str, Any] | None = Field(description="WeChat: package_info for requestMerchantTransfer")
    fail_reason: str | None
