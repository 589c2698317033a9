"""微信支付代金券 (v3 `marketing/favor`), the stock creator's side: stocks, sending, queries, `COUPON.USE`.

The creator is the merchant whose credentials sign (direct mode: `mchid`); only the creator may send its
stock's coupons (sandboxes/wechatpay/README.md "代金券"). Facts relied on (docs/protocols/wechatpay.md §14): a
stock is created `unactivated` and answers the same stock to a repeated `out_request_no` with the same parameters;
`max_amount = coupon_amount × max_coupons`; `transaction_minimum > coupon_amount`; the window is at most 90
days; `start | pause | restart | stop` take `{stock_creator_mchid}`; a send is idempotent by the sender's
`out_request_no`; `COUPON.USE` comes to the creator's callback URL (`POST …/favor/callbacks`), signed like every
callback, the coupon AES-256-GCM-encrypted under the APIv3 key (resource `original_type = coupon`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlencode

from services.cashier.connectors.base import ChannelError, ChannelUnavailable, InvalidSignature
from services.cashier.connectors.coupons import (
    ChannelCoupon,
    ChannelCouponEvent,
    ChannelStock,
    ChannelStockRequest,
    CouponStatus,
)
from services.cashier.connectors.wechatpay import signing
from services.cashier.connectors.wechatpay.client import WechatPayConnector

PREFIX = "/v3/marketing/favor"
CST = timezone(timedelta(hours=8))
STOCK_NAME_LENGTH_MAX = 20
STOCK_ACTIONS = frozenset({"start", "pause", "restart", "stop"})
COUPON_STATES = {"SENDED": CouponStatus.AVAILABLE, "USED": CouponStatus.USED, "EXPIRED": CouponStatus.EXPIRED}
EVENT_KINDS = {"COUPON.USE": "used"}  # 代金券 has no other callback (商家券's COUPON.SEND: not mirrored)


def _creator(connector: WechatPayConnector) -> str:
    mchid = connector.config.mchid
    if connector.config.partner or not mchid:
        raise ChannelError("PARAM_ERROR", "代金券 stocks are created by a directly connected merchant (mchid)")
    return mchid


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(CST).isoformat(timespec="seconds")


def _stock_name(name: str) -> str:
    """WeChat's 1-20 characters without `_ , ; |`."""
    cleaned = "".join(" " if c in "_,;|" else c for c in name).strip() or "coupon"
    return cleaned[:STOCK_NAME_LENGTH_MAX]


async def set_callback(connector: WechatPayConnector, notify_url: str) -> None:
    """Where `COUPON.USE` for the creator's stocks goes (one URL per creator; setting it again is harmless)."""
    await connector._request(
        "POST", f"{PREFIX}/callbacks", {"mchid": _creator(connector), "notify_url": notify_url, "switch": True}
    )


async def create_stock(connector: WechatPayConnector, request: ChannelStockRequest) -> str:
    """Create the stock (`unactivated`); the same request again answers the same stock id."""
    creator = _creator(connector)
    body: dict[str, Any] = {
        "stock_name": _stock_name(request.name),
        "belong_merchant": creator,
        "available_begin_time": _rfc3339(request.begin),
        "available_end_time": _rfc3339(request.end),
        "stock_use_rule": {
            "max_coupons": request.max_coupons,
            "max_amount": request.amount_minor * request.max_coupons,
            "max_coupons_per_user": request.max_per_user,
            "natural_person_limit": False,
            "prevent_api_abuse": False,
        },
        "coupon_use_rule": {
            "fixed_normal_coupon": {
                "coupon_amount": request.amount_minor,
                "transaction_minimum": request.threshold_minor,
            },
            "available_merchants": list(request.available_mchids or (creator,)),
        },
        "no_cash": request.no_cash,
        "stock_type": "NORMAL",
        "out_request_no": request.out_request_no,
    }
    data = connector._json(await connector._request("POST", f"{PREFIX}/coupon-stocks", body))
    stock_id = data.get("stock_id")
    if not isinstance(stock_id, str) or not stock_id:
        raise ChannelUnavailable("wechatpay coupon-stocks reply lacks stock_id")
    return stock_id


async def stock_action(connector: WechatPayConnector, stock_id: str, action: str) -> None:
    """start | pause | restart | stop; repeating the call that led to the current state is answered again."""
    if action not in STOCK_ACTIONS:
        raise ChannelError("PARAM_ERROR", f"no stock action {action!r}")
    path = f"{PREFIX}/stocks/{quote(stock_id, safe='')}/{action}"
    await connector._request("POST", path, {"stock_creator_mchid": _creator(connector)})


async def query_stock(connector: WechatPayConnector, stock_id: str) -> ChannelStock:
    query = urlencode({"stock_creator_mchid": _creator(connector)})
    data = connector._json(await connector._request("GET", f"{PREFIX}/stocks/{quote(stock_id, safe='')}?{query}"))
    rule = data.get("stock_use_rule") or {}
    fixed = rule.get("fixed_normal_coupon") or {}
    return ChannelStock(
        channel_stock_id=str(data.get("stock_id") or stock_id),
        status=str(data.get("status") or ""),
        amount_minor=_int(fixed.get("coupon_amount")),
        max_coupons=_int(rule.get("max_coupons")),
        sent_count=_int(data.get("distributed_coupons")),
    )


async def send_coupon(connector: WechatPayConnector, stock_id: str, openid: str, out_request_no: str) -> str:
    """Send one coupon to `openid` (the payer's openid under the merchant's appid); idempotent by out_request_no."""
    body = {
        "stock_id": stock_id,
        "out_request_no": out_request_no,
        "appid": connector.config.payer_appid,
        "stock_creator_mchid": _creator(connector),
    }
    data = connector._json(await connector._request("POST", f"{PREFIX}/users/{quote(openid, safe='')}/coupons", body))
    coupon_id = data.get("coupon_id")
    if not isinstance(coupon_id, str) or not coupon_id:
        raise ChannelUnavailable("wechatpay send-coupon reply lacks coupon_id")
    return coupon_id


async def query_coupon(connector: WechatPayConnector, openid: str, coupon_id: str) -> ChannelCoupon:
    query = urlencode({"appid": connector.config.payer_appid})
    path = f"{PREFIX}/users/{quote(openid, safe='')}/coupons/{quote(coupon_id, safe='')}?{query}"
    return _coupon(connector._json(await connector._request("GET", path)), coupon_id)


def _coupon(data: Mapping[str, Any], coupon_id: str) -> ChannelCoupon:
    consumed = data.get("consume_information") or {}
    return ChannelCoupon(
        channel_coupon_id=str(data.get("coupon_id") or coupon_id),
        status=COUPON_STATES.get(str(data.get("status", "")), CouponStatus.UNKNOWN),
        used_at=_time(consumed.get("consume_time")),
        transaction_id=str(consumed["transaction_id"]) if consumed.get("transaction_id") else None,
    )


def parse_coupon_notification(
    connector: WechatPayConnector, headers: Mapping[str, str], body: bytes
) -> ChannelCouponEvent:
    """Verify (platform signature, then AES-256-GCM) and read a `COUPON.USE` callback."""
    connector._verify_with_known_keys(headers, body)
    envelope, data = signing.open_callback(body, connector.config.apiv3_key)
    event_type = str(envelope.get("event_type"))
    kind = EVENT_KINDS.get(event_type)
    if kind is None:
        raise ChannelError("UNSUPPORTED_EVENT_TYPE", f"{event_type} is not a coupon event")
    event_id = envelope.get("id")
    if not event_id:
        raise InvalidSignature("coupon notification lacks its id")
    coupon_id, stock_id = data.get("coupon_id"), data.get("stock_id")
    if not coupon_id or not stock_id:
        raise ChannelUnavailable("coupon notification lacks coupon_id or stock_id")
    coupon = _coupon(data, str(coupon_id))
    return ChannelCouponEvent(
        event_id=str(event_id),
        kind=kind,
        channel_stock_id=str(stock_id),
        channel_coupon_id=coupon.channel_coupon_id,
        occurred_at=coupon.used_at or _time(envelope.get("create_time")),
        transaction_id=coupon.transaction_id,
    )


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
