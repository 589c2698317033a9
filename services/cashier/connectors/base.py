"""The one interface every channel connector implements.

The cashier talks to WeChat Pay, Alipay, UnionPay, e-CNY and the wallet only through this
interface, so adding a channel means writing one more folder of the same shape. Everything here is
plain data: amounts are integer minor units (fen), times are timezone-aware datetimes. Connectors
convert to the channel's own representation (yuan strings, RFC 3339, yyyyMMddHHmmss) at the edge.

Connectors raise only the three errors below, so the cashier can decide between "fail over to the
next route" (ChannelUnavailable, or a ChannelError with retryable=True), "this payment is refused"
(ChannelError) and "somebody forged a message" (InvalidSignature).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from services.cashier.domain.payments import PaymentScene


class ChannelError(Exception):
    """The channel answered and refused (e.g. PARAM_ERROR, ACQ.TRADE_HAS_CLOSE)."""

    def __init__(self, code: str, message: str, *, retryable: bool = False, http_status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.http_status = http_status


class ChannelUnavailable(Exception):
    """The channel did not answer usefully: connection refused, timeout, 5xx, or an unverifiable reply."""


class InvalidSignature(Exception):
    """A response or notification failed signature verification or decryption; nothing may change."""


class TradeStatus(enum.StrEnum):
    """Channel trade state mapped onto the cashier's vocabulary."""

    NOT_FOUND = "not_found"  # the channel has no such trade (yet): Alipay precreate before scan
    PENDING = "pending"  # created, waiting for the payer (NOTPAY, WAIT_BUYER_PAY, USERPAYING)
    SUCCEEDED = "succeeded"  # paid (SUCCESS, TRADE_SUCCESS, TRADE_FINISHED, REFUND)
    FAILED = "failed"  # PAYERROR
    CLOSED = "closed"  # closed unpaid (CLOSED, REVOKED, TRADE_CLOSED without payment)


class RefundStatus(enum.StrEnum):
    NOT_FOUND = "not_found"
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PrepayRequest:
    out_trade_no: str
    amount_minor: int
    currency: str
    description: str
    scene: PaymentScene
    notify_url: str
    expire_at: datetime | None = None
    payer_openid: str | None = None
    payer_client_ip: str | None = None
    return_url: str | None = None
    attach: str | None = None
    profit_sharing: bool = False
    merchant_id: str | None = None  # wallet: whose merchant_pending account is credited
    payer_user_id: str | None = None  # wallet: whose user_wallet account is debited
    platform_fee_minor: int = 0  # wallet: the platform fee line of the hold (docs/ledger.md §3.2)


@dataclass(frozen=True, slots=True)
class PrepayResult:
    """What the payer needs next: a QR code URL, signed JSAPI/app parameters, or a redirect URL."""

    payer_action: dict[str, Any]
    channel_trade_no: str | None = None


@dataclass(frozen=True, slots=True)
class ChannelDiscount:
    """A coupon the channel applied on its side (WeChat `promotion_detail[]`, Alipay `voucher_detail_list`): the
    payer paid `amount_minor` less than the amount Juhe asked for. Who funded it decides the money: the
    channel or a third party (`channel_minor`) or the merchant itself (`merchant_minor`); `unsettled_minor` is
    the part the channel does not settle to the merchant (a WeChat 免充值 NOCASH coupon, an Alipay 商家券's
    merchant contribution): what the merchant collects less (docs/marketing.md)."""

    coupon_id: str
    amount_minor: int
    channel_minor: int
    merchant_minor: int
    unsettled_minor: int
    stock_id: str | None = None
    kind: str | None = None  # WeChat CASH | NOCASH, Alipay ALIPAY_BIZ_VOUCHER | ALIPAY_FIX_VOUCHER | …

    def record(self) -> dict[str, Any]:
        return {
            "coupon_id": self.coupon_id,
            "stock_id": self.stock_id,
            "kind": self.kind,
            "amount_minor": self.amount_minor,
            "channel_minor": self.channel_minor,
            "merchant_minor": self.merchant_minor,
            "unsettled_minor": self.unsettled_minor,
        }


def channel_discount_summary(discounts: tuple[ChannelDiscount, ...]) -> dict[str, Any] | None:
    """The `channel_discount` a payment's success event carries (None without channel coupons)."""
    if not discounts:
        return None
    return {
        "discount_minor": sum(d.amount_minor for d in discounts),
        "channel_minor": sum(d.channel_minor for d in discounts),
        "merchant_minor": sum(d.merchant_minor for d in discounts),
        "unsettled_minor": sum(d.unsettled_minor for d in discounts),
        "coupons": [d.record() for d in discounts],
    }


@dataclass(frozen=True, slots=True)
class TradeQueryResult:
    status: TradeStatus
    out_trade_no: str
    channel_trade_no: str | None = None
    amount_minor: int | None = None
    paid_at: datetime | None = None
    detail: str | None = None
    channel_discounts: tuple[ChannelDiscount, ...] = ()
    # A wallet payment's split (the wallet connector): {cash_minor, bonus_minor}, what the payer paid from the
    # cash balance and from a top-up bonus (docs/ledger.md §3.2). None for every other channel.
    wallet_split: dict[str, int] | None = None


@dataclass(frozen=True, slots=True)
class RefundRequest:
    out_trade_no: str
    out_refund_no: str
    refund_minor: int
    total_minor: int
    currency: str
    reason: str | None = None
    notify_url: str | None = None


@dataclass(frozen=True, slots=True)
class RefundResult:
    status: RefundStatus
    out_refund_no: str
    out_trade_no: str | None = None
    channel_refund_no: str | None = None
    refund_minor: int | None = None
    succeeded_at: datetime | None = None
    wallet_split: dict[str, int] | None = None  # the wallet connector: {cash_minor, bonus_minor, platform_minor}


@dataclass(frozen=True, slots=True)
class PaymentCodeRequest:
    """付款码: charge the code the payer shows (scanned at a gate, canteen or counter) right now.

    The answer is synchronous: SUCCEEDED, or PENDING while the payer must confirm (WeChat
    `USERPAYING`, Alipay 10003: a password step); then poll `query` with backoff and, at the deadline,
    `reverse` (WeChat) / `cancel` (Alipay), which also returns the money if the payer confirmed late.
    """

    out_trade_no: str
    amount_minor: int
    currency: str
    description: str
    auth_code: str
    notify_url: str | None = None  # Alipay notifies a barcode payment; WeChat codepay has no callback
    device_id: str | None = None
    store_id: str | None = None
    attach: str | None = None


# Which channel issued a payer-presented code, from its digits (what the payer's app shows):
# WeChat 18 digits starting 10..15, Alipay 16..24 digits starting 25..30, UnionPay 19 digits starting 62.
_CODE_RULES: tuple[tuple[str, frozenset[str], range], ...] = (
    ("wechatpay", frozenset({"10", "11", "12", "13", "14", "15"}), range(18, 19)),
    ("alipay", frozenset({"25", "26", "27", "28", "29", "30"}), range(16, 25)),
    ("unionpay", frozenset({"62"}), range(19, 20)),
)


def payment_code_channel(auth_code: str) -> str | None:
    """The channel of a 付款码 by prefix and length, or None when no channel issues such a code."""
    if not auth_code.isascii() or not auth_code.isdigit():
        return None
    for channel, prefixes, lengths in _CODE_RULES:
        if auth_code[:2] in prefixes and len(auth_code) in lengths:
            return channel
    return None


class TransferStatus(enum.StrEnum):
    """A payout to a user's channel account (WeChat change, Alipay balance)."""

    WAITING_USER = "waiting_user"  # WeChat 商家转账: the user must confirm receipt in WeChat
    PENDING = "pending"  # accepted, money on its way
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # refused or failed; nothing left the merchant's account
    CANCELLED = "cancelled"  # withdrawn before the user confirmed, or never confirmed in time
    NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """Pay `amount_minor` to a user's channel account. `out_transfer_no` is the idempotency key.

    `payee` is an openid (WeChat) or an Alipay user id (2088…) / logon id; `payee_name` is the real
    name (WeChat: required from 2,000 yuan, checked; Alipay: required for a logon id).
    """

    out_transfer_no: str
    amount_minor: int
    currency: str
    payee: str
    remark: str
    payee_type: str = "openid"  # wechatpay: openid; alipay: ALIPAY_USER_ID | ALIPAY_LOGON_ID | ALIPAY_OPEN_ID
    payee_name: str | None = None
    notify_url: str | None = None
    scene_id: str | None = None  # WeChat transfer_scene_id (e.g. 1005 佣金报酬)
    scene_report: tuple[tuple[str, str], ...] = ()  # WeChat transfer_scene_report_infos (type, content)


@dataclass(frozen=True, slots=True)
class TransferResult:
    status: TransferStatus
    out_transfer_no: str
    channel_transfer_no: str | None = None
    amount_minor: int | None = None
    user_action: dict[str, Any] | None = None  # WeChat: {"package_info": …} for requestMerchantTransfer
    fail_reason: str | None = None


class NotificationKind(enum.StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class Notification:
    """A verified, decoded async notification, plus the exact reply the channel expects."""

    kind: NotificationKind
    payment: TradeQueryResult | None = None
    refund: RefundResult | None = None
    ack_status_code: int = 200
    ack_body: bytes = b""
    ack_content_type: str = "text/plain"


class BillLineKind(enum.StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class BillLine:
    """One line of a channel's daily bill, in minor units."""

    kind: BillLineKind
    out_trade_no: str
    channel_trade_no: str
    amount_minor: int  # payment: settled amount; refund: refunded amount (positive)
    fee_minor: int  # channel fee in fen, rounded half-up from the bill's precision; refunds may be <= 0
    status: str  # the channel's raw status word for this line
    occurred_at: datetime
    out_refund_no: str | None = None
    channel_refund_no: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Bill:
    bill_date: date
    lines: list[BillLine]
    raw_sha1: str | None = None


class Connector(Protocol):
    """What the cashier needs from a channel. One instance per merchant credential set."""

    channel: str

    async def prepay(self, request: PrepayRequest) -> PrepayResult: ...

    async def query(self, out_trade_no: str) -> TradeQueryResult: ...

    async def close(self, out_trade_no: str) -> None: ...

    async def refund(self, request: RefundRequest) -> RefundResult: ...

    async def query_refund(self, out_refund_no: str, out_trade_no: str) -> RefundResult: ...

    def parse_notification(self, headers: dict[str, str], body: bytes) -> Notification: ...

    async def download_bill(self, bill_date: date) -> Bill: ...
