"""WeChat Pay JSON objects → base result types (shared by the client and the callback parser)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.cashier.connectors.base import ChannelDiscount, RefundResult, RefundStatus, TradeQueryResult, TradeStatus

TRADE_STATES = {
    "SUCCESS": TradeStatus.SUCCEEDED,
    "REFUND": TradeStatus.SUCCEEDED,  # paid, then (partly) refunded: the payment itself succeeded
    "NOTPAY": TradeStatus.PENDING,
    "USERPAYING": TradeStatus.PENDING,
    "ACCEPT": TradeStatus.PENDING,
    "PAYERROR": TradeStatus.FAILED,
    "CLOSED": TradeStatus.CLOSED,
    "REVOKED": TradeStatus.CLOSED,
}
REFUND_STATES = {
    "SUCCESS": RefundStatus.SUCCEEDED,
    "PROCESSING": RefundStatus.PENDING,
    "CLOSED": RefundStatus.FAILED,
    "ABNORMAL": RefundStatus.FAILED,  # needs manual action at WeChat; the refund did not reach the payer
}


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _fen(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def channel_discounts(promotions: Any) -> tuple[ChannelDiscount, ...]:
    """`promotion_detail[]` (docs/protocols/wechatpay.md §14): WeChat's and third parties' contributions are the
    channel's, the merchant's own is the merchant's; a 免充值 (NOCASH) coupon is not settled to the merchant. Tolerant:
    entries without an id or a positive amount are ignored."""
    found = []
    for entry in promotions if isinstance(promotions, list) else []:
        if not isinstance(entry, dict) or not entry.get("coupon_id") or not _fen(entry.get("amount")):
            continue
        amount = _fen(entry["amount"])
        merchant = min(_fen(entry.get("merchant_contribute")), amount)
        found.append(
            ChannelDiscount(
                coupon_id=str(entry["coupon_id"]),
                amount_minor=amount,
                channel_minor=amount - merchant,
                merchant_minor=merchant,
                unsettled_minor=amount if entry.get("type") == "NOCASH" else 0,
                stock_id=str(entry["stock_id"]) if entry.get("stock_id") else None,
                kind=entry.get("type") or None,
            )
        )
    return tuple(found)


def trade_result(data: dict[str, Any]) -> TradeQueryResult:
    """Unknown trade states map to PENDING (tolerant): the cashier keeps polling, never guesses."""
    state = str(data.get("trade_state", ""))
    amount = data.get("amount") or {}
    total = amount.get("total")
    return TradeQueryResult(
        status=TRADE_STATES.get(state, TradeStatus.PENDING),
        out_trade_no=str(data.get("out_trade_no", "")),
        channel_trade_no=data.get("transaction_id") or None,
        amount_minor=total if isinstance(total, int) and not isinstance(total, bool) else None,
        paid_at=parse_time(data.get("success_time")),
        detail=data.get("trade_state_desc") or state or None,
        channel_discounts=channel_discounts(data.get("promotion_detail")),
    )


def refund_result(data: dict[str, Any], *, status_field: str = "status") -> RefundResult:
    state = str(data.get(status_field) or data.get("status") or data.get("refund_status") or "")
    amount = data.get("amount") or {}
    refund = amount.get("refund")
    return RefundResult(
        status=REFUND_STATES.get(state, RefundStatus.PENDING),
        out_refund_no=str(data.get("out_refund_no", "")),
        out_trade_no=data.get("out_trade_no") or None,
        channel_refund_no=data.get("refund_id") or None,
        refund_minor=refund if isinstance(refund, int) and not isinstance(refund, bool) else None,
        succeeded_at=parse_time(data.get("success_time")),
    )
