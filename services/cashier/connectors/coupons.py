"""Channel coupon programmes in channel-neutral terms (WeChat Pay 代金券, Alipay 商家券 2.0).

Marketing decides what a campaign's stock is and keeps the budget; the cashier holds the channel credentials,
so it speaks the channels' coupon APIs for marketing (services/cashier/flows/channel_coupons.py). These types
are what the two connector modules (`wechatpay/coupons.py`, `alipay/coupons.py`) take and answer, so the flow
and marketing never see a channel's field names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class CouponStatus(StrEnum):
    """A coupon at the channel: WeChat SENDED / USED / EXPIRED, Alipay AVAILABLE / USED / EXPIRED."""

    AVAILABLE = "available"
    USED = "used"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # a state this code does not know: nothing is concluded from it


@dataclass(frozen=True, slots=True)
class ChannelStockRequest:
    """One stock to create at the channel. Every field is fixed by marketing when it first prepares the stock
    and sent again unchanged on a retry, so the channel's idempotency (`out_request_no` / `out_biz_no` with the
    same parameters) answers the stock it already created."""

    out_request_no: str
    name: str
    amount_minor: int  # the coupon's face value
    threshold_minor: int  # the order must reach this (WeChat: strictly above the amount)
    max_coupons: int
    max_per_user: int
    begin: datetime
    end: datetime
    available_mchids: tuple[str, ...] = ()  # WeChat: the channel merchant numbers the coupon is usable at
    no_cash: bool = False  # WeChat 免充值 (merchant-funded at settlement) instead of 预充值


@dataclass(frozen=True, slots=True)
class ChannelStock:
    """A stock as the channel reports it (the daily comparison's view of the channel)."""

    channel_stock_id: str
    status: str  # the channel's own word (running, paused, stoped, ACTIVE, STOPPED, …)
    amount_minor: int | None
    max_coupons: int | None
    sent_count: int | None
    used_count: int | None = None  # Alipay reports it; WeChat's stock query does not


@dataclass(frozen=True, slots=True)
class ChannelCoupon:
    channel_coupon_id: str
    status: CouponStatus
    used_at: datetime | None = None
    transaction_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChannelCouponEvent:
    """A verified callback about one coupon (WeChat `COUPON.USE`, Alipay
    `alipay.marketing.activity.message.*`), as marketing applies it."""

    event_id: str  # the channel's own id of the callback (WeChat `id`, Alipay `notify_id`)
    kind: str  # used | received | expired | stock (a stock-level message: created, stopped, appended, …)
    channel_stock_id: str
    channel_coupon_id: str | None
    occurred_at: datetime | None
    transaction_id: str | None = None
    detail: dict[str, str] = field(default_factory=dict)
