"""e-CNY bank notifications (docs/protocols/ecny.md §5): signed JSON events → base.Notification.

`order.succeeded` / `order.failed` / `order.closed` carry the order; `refund.succeeded` /
`refund.failed` the refund. The bank retries until it reads HTTP 200 with `{"code":"SUCCESS"}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from services.cashier.connectors.base import (
    InvalidSignature,
    Notification,
    NotificationKind,
    RefundResult,
    RefundStatus,
    TradeQueryResult,
    TradeStatus,
)
from services.cashier.connectors.ecny import gm
from services.cashier.connectors.ecny.models import (
    ORDER_CLOSED,
    ORDER_FAILED,
    ORDER_PENDING,
    ORDER_SUCCEEDED,
    REFUND_FAILED,
    REFUND_PROCESSING,
    REFUND_SUCCEEDED,
)

ACK_BODY = b'{"code":"SUCCESS"}'
NOTIFICATION_BODY_MAX_BYTES = 64 * 1024
_ORDER_STATUS = {
    ORDER_PENDING: TradeStatus.PENDING,
    ORDER_SUCCEEDED: TradeStatus.SUCCEEDED,
    ORDER_FAILED: TradeStatus.FAILED,
    ORDER_CLOSED: TradeStatus.CLOSED,
}
_REFUND_STATUS = {
    REFUND_PROCESSING: RefundStatus.PENDING,
    REFUND_SUCCEEDED: RefundStatus.SUCCEEDED,
    REFUND_FAILED: RefundStatus.FAILED,
}


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def _amount(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def order_result(data: Mapping[str, Any], sm4_key_hex: str) -> TradeQueryResult:
    """A bank order → TradeQueryResult; the SM4-encrypted payer wallet is decrypted into `detail`."""
    status = _ORDER_STATUS.get(str(data.get("status")), TradeStatus.PENDING)
    detail = str(data.get("status") or "")
    if data.get("failure_code"):
        detail += f" {data['failure_code']}"
    if data.get("payer_wallet_enc"):
        try:
            wallet = gm.sm4_decrypt(sm4_key_hex, str(data["payer_wallet_enc"]))
        except gm.GmError as exc:
            raise InvalidSignature(f"payer_wallet_enc does not decrypt: {exc}") from exc
        detail += f" wallet={wallet} level={data.get('wallet_level')}"
    return TradeQueryResult(
        status=status,
        out_trade_no=str(data.get("out_trade_no", "")),
        channel_trade_no=str(data["order_no"]) if data.get("order_no") else None,
        amount_minor=_amount(data.get("amount_minor")),
        paid_at=_time(data.get("paid_at")),
        detail=detail.strip() or None,
    )


def refund_result(data: Mapping[str, Any]) -> RefundResult:
    return RefundResult(
        status=_REFUND_STATUS.get(str(data.get("status")), RefundStatus.PENDING),
        out_refund_no=str(data.get("out_refund_no", "")),
        out_trade_no=str(data["out_trade_no"]) if data.get("out_trade_no") else None,
        channel_refund_no=str(data["refund_no"]) if data.get("refund_no") else None,
        refund_minor=_amount(data.get("amount_minor")),
        succeeded_at=_time(data.get("finished_at")),
    )


def notification_from_body(body: bytes, merchant_id: str, sm4_key_hex: str) -> Notification:
    """Decode an already signature-checked body; refuse anything not addressed to this merchant."""
    if len(body) > NOTIFICATION_BODY_MAX_BYTES:
        raise InvalidSignature("notification body too large")
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise InvalidSignature("notification is not JSON") from exc
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
        raise InvalidSignature("notification without data")
    data = event["data"]
    if data.get("merchant_id") != merchant_id:
        raise InvalidSignature(f"notification for another merchant {data.get('merchant_id')!r}")
    kind = str(event.get("event", ""))
    if kind.startswith("order."):
        return Notification(
            kind=NotificationKind.PAYMENT,
            payment=order_result(data, sm4_key_hex),
            ack_body=ACK_BODY,
            ack_content_type="application/json",
        )
    if kind.startswith("refund."):
        return Notification(
            kind=NotificationKind.REFUND,
            refund=refund_result(data),
            ack_body=ACK_BODY,
            ack_content_type="application/json",
        )
    raise InvalidSignature(f"unknown notification event {kind!r}")
