"""Channel coupon programmes for marketing: WeChat Pay 代金券 (`wechatpay_favor`) and Alipay 商家券 2.0
(`alipay_voucher`), through the internal API (`/v1/internal/channel-coupons`).

Why here: the cashier is the one place that holds channel secrets and signs channel requests (docs/architecture.md §2);
marketing owns campaigns, budgets and coupon state and never sees a key. So this module is stateless, like
transfers: marketing names the merchant whose channel account acts (the stock's creator) and an idempotency
number it keeps (`out_request_no` / `out_biz_no`); a repeated call answers what the channel answered the first
time, so marketing can retry after any crash.

Callbacks about those coupons (WeChat `COUPON.USE`, Alipay `alipay.marketing.activity.message.*`) come to
`/v1/notify/coupons/{program}/{merchant_id}` — the cashier's notify URL family, as payment notifications do:
verified (signature, WeChat's AES-256-GCM), then handed to marketing, and acknowledged to the channel only
once marketing has stored them, so a lost hand-over is retried by the channel itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, TypeVar

from libs.common.errors import Problem
from libs.common.logging import get_logger
from services.cashier.connectors.base import ChannelError, ChannelUnavailable, InvalidSignature
from services.cashier.connectors.coupons import ChannelCoupon, ChannelCouponEvent, ChannelStock, ChannelStockRequest
from services.cashier.connectors.registry import ChannelReply, channel_spec
from services.cashier.domain.errors import CHANNEL_REFUSED, CHANNEL_UNAVAILABLE, UNKNOWN_CHANNEL
from services.cashier.flows.context import Cashier
from services.cashier.flows.transfers import WECHAT_ACK

log = get_logger("juhe.cashier.channel_coupons")

PROGRAMS = {"wechatpay_favor": "wechatpay", "alipay_voucher": "alipay"}
NOTIFY_PATH = "/v1/notify/coupons/{program}/{merchant_id}"
ALIPAY_ACK = ChannelReply(200, b"success", "text/plain")
STOCK_ACTIONS = frozenset({"start", "pause", "restart", "stop"})
T = TypeVar("T")


def _channel(program: str) -> str:
    channel = PROGRAMS.get(program)
    if channel is None:
        raise Problem(UNKNOWN_CHANNEL, f"no channel coupon programme {program!r}", known=sorted(PROGRAMS))
    return channel


async def _guarded(program: str, call: Callable[[], Awaitable[T]]) -> T:
    """One channel call; its failures as the catalogue's problems (a refusal 402 with the channel's code,
    anything the channel could not answer 503, retryable)."""
    try:
        return await call()
    except ChannelError as exc:
        if exc.retryable:
            raise Problem(CHANNEL_UNAVAILABLE, f"{program}: {exc.code}: {exc.message}") from exc
        raise Problem(CHANNEL_REFUSED, f"{program}: {exc.code}: {exc.message}", channel_code=exc.code) from exc
    except (ChannelUnavailable, InvalidSignature) as exc:
        raise Problem(CHANNEL_UNAVAILABLE, f"{program}: {exc}") from exc


async def _mchids(cashier: Cashier, merchant_ids: list[str], livemode: bool | None) -> tuple[str, ...]:
    """The WeChat merchant numbers of Juhe merchants (their configured `mchid`, or `sub_mchid` in partner mode)."""
    numbers = []
    for merchant_id in merchant_ids:
        connector = await cashier.connectors.get(merchant_id, "wechatpay", livemode=livemode)
        config = connector.config  # type: ignore[attr-defined]
        number = config.sub_mchid if config.partner else config.mchid
        if number:
            numbers.append(str(number))
    return tuple(dict.fromkeys(numbers))


def stock_view(program: str, stock: ChannelStock) -> dict[str, Any]:
    return {"program": program, **asdict(stock)}


def coupon_view(program: str, coupon: ChannelCoupon) -> dict[str, Any]:
    return {"program": program, **asdict(coupon)}


async def create_stock(
    cashier: Cashier,
    *,
    program: str,
    merchant_id: str,
    request: ChannelStockRequest,
    usable_at: list[str],
    livemode: bool | None = None,
) -> dict[str, Any]:
    """Create the stock with `merchant_id`'s channel account (its creator and, for WeChat, where `COUPON.USE`
    is sent); `usable_at` are the Juhe merchants whose WeChat numbers may take its coupons. `livemode` picks the
    configuration of a merchant holding a test and a live one side by side (None: its only one, else refused)."""
    channel = _channel(program)
    connector: Any = await cashier.connectors.get(merchant_id, channel, livemode=livemode)
    if channel == "wechatpay":
        from services.cashier.connectors.wechatpay import coupons as wechat

        mchids = await _mchids(cashier, usable_at, livemode) if usable_at else ()
        prepared = ChannelStockRequest(**{**asdict(request), "available_mchids": mchids})
        notify_url = cashier.settings.public_base_url.rstrip("/") + NOTIFY_PATH.format(
            program=program, merchant_id=merchant_id
        )
        await _guarded(program, lambda: wechat.set_callback(connector, notify_url))
        stock_id = await _guarded(program, lambda: wechat.create_stock(connector, prepared))
    else:
        from services.cashier.connectors.alipay import coupons as alipay

        stock_id = await _guarded(program, lambda: alipay.create_stock(connector, request))
    log.info("channel stock created", program=program, merchant_id=merchant_id, channel_stock_id=stock_id)
    return {"program": program, "channel_stock_id": stock_id, "out_request_no": request.out_request_no}


async def stock_action(
    cashier: Cashier,
    *,
    program: str,
    merchant_id: str,
    channel_stock_id: str,
    action: str,
    out_request_no: str,
    livemode: bool | None = None,
) -> dict[str, Any]:
    """start | pause | restart | stop at the channel. Alipay's activity runs from its creation and has no pause:
    there only `stop` reaches the channel (`applied: false` for the others; marketing stops sending instead)."""
    channel = _channel(program)
    if action not in STOCK_ACTIONS:
        raise Problem(CHANNEL_REFUSED, f"no stock action {action!r}", channel_code="PARAM_ERROR")
    connector: Any = await cashier.connectors.get(merchant_id, channel, livemode=livemode)
    applied = True
    if channel == "wechatpay":
        from services.cashier.connectors.wechatpay import coupons as wechat

        await _guarded(program, lambda: wechat.stock_action(connector, channel_stock_id, action))
    elif action == "stop":
        from services.cashier.connectors.alipay import coupons as alipay

        await _guarded(program, lambda: alipay.stop_stock(connector, channel_stock_id, out_request_no))
    else:
        applied = False
    return {"program": program, "channel_stock_id": channel_stock_id, "action": action, "applied": applied}


async def query_stock(
    cashier: Cashier, *, program: str, merchant_id: str, channel_stock_id: str, livemode: bool | None = None
) -> dict[str, Any]:
    channel = _channel(program)
    connector: Any = await cashier.connectors.get(merchant_id, channel, livemode=livemode)
    if channel == "wechatpay":
        from services.cashier.connectors.wechatpay import coupons as wechat

        stock = await _guarded(program, lambda: wechat.query_stock(connector, channel_stock_id))
    else:
        from services.cashier.connectors.alipay import coupons as alipay

        stock = await _guarded(program, lambda: alipay.query_stock(connector, channel_stock_id))
    return stock_view(program, stock)


async def send_coupon(
    cashier: Cashier,
    *,
    program: str,
    merchant_id: str,
    channel_stock_id: str,
    user: str,
    out_request_no: str,
    livemode: bool | None = None,
) -> dict[str, Any]:
    """One coupon to the user (WeChat openid under the merchant's appid, Alipay user id); idempotent at the
    channel by `out_request_no`."""
    channel = _channel(program)
    connector: Any = await cashier.connectors.get(merchant_id, channel, livemode=livemode)
    if channel == "wechatpay":
        from services.cashier.connectors.wechatpay import coupons as wechat

        sent = wechat.send_coupon(connector, channel_stock_id, user, out_request_no)
    else:
        from services.cashier.connectors.alipay import coupons as alipay

        sent = alipay.send_coupon(connector, channel_stock_id, user, out_request_no)
    coupon_id = await _guarded(program, lambda: sent)
    return {"program": program, "channel_stock_id": channel_stock_id, "channel_coupon_id": coupon_id}


async def query_coupon(
    cashier: Cashier, *, program: str, merchant_id: str, channel_coupon_id: str, user: str, livemode: bool | None = None
) -> dict[str, Any]:
    """One coupon as the channel sees it. Alipay 商家券 has no per-voucher query (its activity query counts
    sent and used vouchers): refused with `channel_code: UNSUPPORTED`."""
    channel = _channel(program)
    if channel != "wechatpay":
        raise Problem(CHANNEL_REFUSED, f"{program} has no per-coupon query", channel_code="UNSUPPORTED")
    from services.cashier.connectors.wechatpay import coupons as wechat

    connector: Any = await cashier.connectors.get(merchant_id, channel, livemode=livemode)
    coupon = await _guarded(program, lambda: wechat.query_coupon(connector, user, channel_coupon_id))
    return coupon_view(program, coupon)


def event_view(program: str, merchant_id: str, event: ChannelCouponEvent) -> dict[str, Any]:
    """What marketing receives (`POST /v1/internal/marketing/channel-coupon-events`)."""
    return {
        "program": program,
        "merchant_id": merchant_id,
        "event_id": event.event_id,
        "kind": event.kind,
        "channel_stock_id": event.channel_stock_id,
        "channel_coupon_id": event.channel_coupon_id,
        "occurred_at": event.occurred_at.isoformat() if event.occurred_at else None,
        "transaction_id": event.transaction_id,
        "detail": event.detail,
    }


async def handle_coupon_notification(
    cashier: Cashier, *, program: str, merchant_id: str, headers: dict[str, str], body: bytes
) -> ChannelReply:
    """Verify a coupon callback and hand it to marketing; acknowledged only when marketing has it (the channel
    retries otherwise: WeChat 9 × over the following minutes, Alipay until `success`)."""
    channel = PROGRAMS.get(program)
    spec = channel_spec(channel or "alipay")
    if channel is None:
        return spec.refuse_notification(f"no channel coupon programme {program!r}")
    event: ChannelCouponEvent | None = None
    refusal = f"merchant {merchant_id} has no {channel} channel configured"
    # test and live side by side: the configuration whose keys signed it verifies it (as payment notifications)
    for mode, connector in await cashier.connectors.each_mode(merchant_id, channel):
        try:
            if channel == "wechatpay":
                from services.cashier.connectors.wechatpay import coupons as wechat

                event = wechat.parse_coupon_notification(connector, headers, body)  # type: ignore[arg-type]
            else:
                from services.cashier.connectors.alipay import coupons as alipay

                event = alipay.parse_activity_message(connector, body)  # type: ignore[arg-type]
            break
        except (InvalidSignature, ChannelError, ChannelUnavailable) as exc:
            log.warning(
                "coupon notification refused", program=program, merchant_id=merchant_id, mode=mode, error=repr(exc)
            )
            refusal = str(exc)
    if event is None:
        return spec.refuse_notification(refusal)
    if not await cashier.marketing.channel_coupon_event(event_view(program, merchant_id, event)):
        return spec.refuse_notification("marketing could not take the coupon event now")
    log.info("coupon notification", program=program, kind=event.kind, channel_coupon_id=event.channel_coupon_id)
    return WECHAT_ACK if channel == "wechatpay" else ALIPAY_ACK
