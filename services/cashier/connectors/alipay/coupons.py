"""支付宝商家券 2.0 (`alipay.marketing.activity.ordervoucher.*`) and its activity messages, the app's side.

Facts relied on (docs/protocols/alipay.md §12, sandboxes/alipay/README.md "Vouchers"): `create` answers
`activity_id` and the activity is usable at once (Alipay has no pause: `stop` ends it); every call is idempotent
by `out_biz_no` with the same parameters; `send {activity_id, out_biz_no, user_id}` answers `voucher_code`;
`query` reports `activity_status` and `voucher_inventory_info{send_count, use_count}`. The messages
`alipay.marketing.activity.message.*` come to the app's message gateway form-encoded and signed like a
notification (rsaCheckV1), the event in `biz_content` (JSON).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from services.cashier.connectors.alipay.client import AlipayConnector
from services.cashier.connectors.alipay.models import fen_to_yuan, format_beijing, parse_beijing, response_yuan_to_fen
from services.cashier.connectors.alipay.notifications import decode_form, verify_params
from services.cashier.connectors.base import ChannelError, ChannelUnavailable, InvalidSignature
from services.cashier.connectors.coupons import ChannelCouponEvent, ChannelStock, ChannelStockRequest

METHOD = "alipay.marketing.activity.ordervoucher.{}"
MESSAGE_PREFIX = "alipay.marketing.activity.message."
ACTIVITY_NAME_LENGTH_MAX = 20
COUPON_KINDS = {"received": "received", "used": "used", "expired": "expired"}


async def _call(connector: AlipayConnector, name: str, biz: dict[str, Any]) -> dict[str, Any]:
    method = METHOD.format(name)
    node = await connector._call(method, biz)
    connector._raise_for_code(method, node)
    return node


async def create_stock(connector: AlipayConnector, request: ChannelStockRequest) -> str:
    """Create the voucher activity (usable at once); the same request again answers the same activity."""
    window = {"valid_begin_time": format_beijing(request.begin), "valid_end_time": format_beijing(request.end)}
    biz = {
        "out_biz_no": request.out_request_no,
        "activity_name": request.name[:ACTIVITY_NAME_LENGTH_MAX],
        "code_mode": "MERCHANT_API",
        "voucher_send_mode_info": {
            "voucher_send_mode": "REQUEST",
            "voucher_send_rule_info": {
                "quantity": request.max_coupons,
                "quantity_limit_per_user": request.max_per_user,
                "publish_start_time": window["valid_begin_time"],
                "publish_end_time": window["valid_end_time"],
            },
        },
        "voucher_deduct_info": {
            "voucher_type": "FIX_VOUCHER",
            "fix_voucher_info": {
                "amount": fen_to_yuan(request.amount_minor),
                "floor_amount": fen_to_yuan(request.threshold_minor),
            },
        },
        "voucher_use_rule_info": {"voucher_use_time_info": {"period_type": "ABSOLUTE", "absolute_period_info": window}},
    }
    node = await _call(connector, "create", biz)
    activity_id = node.get("activity_id")
    if not isinstance(activity_id, str) or not activity_id:
        raise ChannelUnavailable("ordervoucher.create answered no activity_id")
    return activity_id


async def stop_stock(connector: AlipayConnector, activity_id: str, out_biz_no: str) -> None:
    await _call(connector, "stop", {"activity_id": activity_id, "out_biz_no": out_biz_no})


async def query_stock(connector: AlipayConnector, activity_id: str) -> ChannelStock:
    node = await _call(connector, "query", {"activity_id": activity_id})
    inventory = node.get("voucher_inventory_info") or {}
    fixed = (node.get("voucher_deduct_info") or {}).get("fix_voucher_info") or {}
    rule = (node.get("voucher_send_mode_info") or {}).get("voucher_send_rule_info") or {}
    return ChannelStock(
        channel_stock_id=str(node.get("activity_id") or activity_id),
        status=str(node.get("activity_status") or ""),
        amount_minor=response_yuan_to_fen(fixed.get("amount")),
        max_coupons=_int(rule.get("quantity")),
        sent_count=_int(inventory.get("send_count")),
        used_count=_int(inventory.get("use_count")),
    )


async def send_coupon(connector: AlipayConnector, activity_id: str, user_id: str, out_biz_no: str) -> str:
    """Send one voucher to the buyer's Alipay user id (2088…); idempotent by out_biz_no."""
    node = await _call(connector, "send", {"activity_id": activity_id, "out_biz_no": out_biz_no, "user_id": user_id})
    code = node.get("voucher_code")
    if not isinstance(code, str) or not code:
        raise ChannelUnavailable("ordervoucher.send answered no voucher_code")
    return code


def parse_activity_message(connector: AlipayConnector, body: bytes) -> ChannelCouponEvent:
    """Verify (rsaCheckV1, addressed to this app) and read one `alipay.marketing.activity.message.*`."""
    params: Mapping[str, str] = decode_form(body)
    verify_params(params, connector.config)
    method = params.get("msg_method", "")
    if not method.startswith(MESSAGE_PREFIX):
        raise ChannelError("UNSUPPORTED_EVENT_TYPE", f"{method or 'a message without msg_method'} is not a voucher one")
    try:
        content = json.loads(params["biz_content"])
        event_id = params["notify_id"]
        activity_id = str(content["activity_id"])
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidSignature(f"voucher message is malformed: {exc}") from exc
    name = method.removeprefix(MESSAGE_PREFIX)
    kind = COUPON_KINDS.get(name, "stock")
    code = content.get("voucher_code")
    if kind != "stock" and not code:
        raise InvalidSignature(f"{method} without voucher_code")
    return ChannelCouponEvent(
        event_id=event_id,
        kind=kind,
        channel_stock_id=activity_id,
        channel_coupon_id=str(code) if code else None,
        occurred_at=parse_beijing(content.get("event_time")),
        transaction_id=str(content["trade_no"]) if content.get("trade_no") else None,
        detail={"message": name, "activity_status": str(content.get("activity_status") or "")},
    )


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
