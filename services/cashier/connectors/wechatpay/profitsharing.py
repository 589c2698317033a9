"""WeChat Pay v3 profit sharing (分账, docs/protocols/wechatpay.md §11): add a receiver, split a paid order, query it,
read the unsplit amount. Amounts are fen (WeChat's own unit here), so no conversion at the edge.

Tolerant reader (the sandbox is the strict side): unknown response fields are ignored, `fail_reason`
and `finish_time` may be absent. The order must have been paid with `PrepayRequest.profit_sharing=True`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from services.cashier.connectors.base import ChannelUnavailable
from services.cashier.connectors.wechatpay.client import WechatPayConnector

RECEIVERS_PER_ORDER_MAX = 50


@dataclass(frozen=True, slots=True)
class ShareReceiver:
    type: str  # MERCHANT_ID | PERSONAL_OPENID | PERSONAL_SUB_OPENID
    account: str
    amount_minor: int
    description: str


@dataclass(frozen=True, slots=True)
class ShareReceiverResult:
    type: str
    account: str
    amount_minor: int
    result: str  # PENDING | SUCCESS | CLOSED
    fail_reason: str | None
    detail_id: str | None


@dataclass(frozen=True, slots=True)
class ShareOrder:
    out_order_no: str
    order_id: str
    transaction_id: str
    state: str  # PROCESSING | FINISHED
    receivers: list[ShareReceiverResult]


def _sub(connector: WechatPayConnector) -> dict[str, Any]:
    config = connector.config
    if config.partner:
        return {"sub_mchid": config.sub_mchid}
    return {}


def _appid(connector: WechatPayConnector) -> dict[str, Any]:
    config = connector.config
    return {"appid": config.sp_appid if config.partner else config.appid}


def _order(data: dict[str, Any]) -> ShareOrder:
    try:
        receivers = [
            ShareReceiverResult(
                type=str(r["type"]),
                account=str(r["account"]),
                amount_minor=int(r["amount"]),
                result=str(r.get("result", "PENDING")),
                fail_reason=r.get("fail_reason"),
                detail_id=r.get("detail_id"),
            )
            for r in data.get("receivers", [])
        ]
        return ShareOrder(
            out_order_no=str(data["out_order_no"]),
            order_id=str(data["order_id"]),
            transaction_id=str(data["transaction_id"]),
            state=str(data["state"]),
            receivers=receivers,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ChannelUnavailable(f"wechatpay profit sharing reply is malformed: {exc!r}") from exc


async def add_receiver(
    connector: WechatPayConnector, *, type: str, account: str, relation_type: str, custom_relation: str | None = None
) -> None:
    """Bind a receiver once (WeChat requires it before any order names it); repeating is harmless."""
    body: dict[str, Any] = {
        **_sub(connector),
        **_appid(connector),
        "type": type,
        "account": account,
        "relation_type": relation_type,
    }
    if custom_relation:
        body["custom_relation"] = custom_relation
    await connector._request("POST", "/v3/profitsharing/receivers/add", body)


async def create_order(
    connector: WechatPayConnector,
    *,
    transaction_id: str,
    out_order_no: str,
    receivers: list[ShareReceiver],
    unfreeze_unsplit: bool,
) -> ShareOrder:
    """Split a paid order; idempotent by out_order_no at WeChat (same body → the same order)."""
    if not 1 <= len(receivers) <= RECEIVERS_PER_ORDER_MAX:
        raise ValueError(f"1..{RECEIVERS_PER_ORDER_MAX} receivers")
    body = {
        **_sub(connector),
        **_appid(connector),
        "transaction_id": transaction_id,
        "out_order_no": out_order_no,
        "receivers": [
            {"type": r.type, "account": r.account, "amount": r.amount_minor, "description": r.description}
            for r in receivers
        ],
        "unfreeze_unsplit": unfreeze_unsplit,
    }
    response = await connector._request("POST", "/v3/profitsharing/orders", body)
    return _order(connector._json(response))


async def query_order(connector: WechatPayConnector, *, out_order_no: str, transaction_id: str) -> ShareOrder:
    query = urlencode({"transaction_id": transaction_id, **_sub(connector)})
    response = await connector._request("GET", f"/v3/profitsharing/orders/{quote(out_order_no, safe='')}?{query}")
    return _order(connector._json(response))


async def unsplit_amount(connector: WechatPayConnector, transaction_id: str) -> int:
    path = f"/v3/profitsharing/transactions/{quote(transaction_id, safe='')}/amounts"
    data = connector._json(await connector._request("GET", path))
    try:
        return int(data["unsplit_amount"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ChannelUnavailable("wechatpay unsplit amount reply is malformed") from exc
