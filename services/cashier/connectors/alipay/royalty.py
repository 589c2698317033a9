"""Alipay royalty (分账, docs/protocols/alipay.md §9): bind receivers, `alipay.trade.order.settle`, settle query.

The trade must have been created with `PrepayRequest.profit_sharing=True` (royalty_freeze). Amounts are
fen here and yuan strings at Alipay. Tolerant reader: `settle_no` is optional (older answers only carry
`trade_no`), unknown fields are ignored; failures are the connector's usual ChannelError /
ChannelUnavailable / InvalidSignature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.cashier.connectors.alipay.client import AlipayConnector
from services.cashier.connectors.alipay.models import fen_to_yuan, yuan_to_fen

METHOD_BIND = "alipay.trade.royalty.relation.bind"
METHOD_SETTLE = "alipay.trade.order.settle"
METHOD_SETTLE_QUERY = "alipay.trade.order.settle.query"


@dataclass(frozen=True, slots=True)
class RoyaltyLine:
    trans_in: str  # the receiver's Alipay user id (2088…) or login name
    amount_minor: int
    desc: str
    trans_in_type: str = "userId"


@dataclass(frozen=True, slots=True)
class SettleResult:
    trade_no: str
    settle_no: str | None


@dataclass(frozen=True, slots=True)
class SettleDetail:
    trans_in: str
    amount_minor: int
    state: str  # SUCCESS | FAIL | PROCESSING


async def bind_receivers(
    connector: AlipayConnector,
    *,
    out_request_no: str,
    receivers: list[tuple[str, str]],
    names: dict[str, str] | None = None,
) -> None:
    """Bind (type, account) pairs to the app; required before a settle names them. `names` (by account)
    adds the receiver's real name, which Alipay checks for a loginName receiver."""
    receiver_list: list[dict[str, str]] = []
    for kind, account in receivers:
        entry = {"type": kind, "account": account}
        if names and names.get(account):
            entry["name"] = names[account]
        receiver_list.append(entry)
    biz = {"out_request_no": out_request_no, "receiver_list": receiver_list}
    node = await connector._call(METHOD_BIND, biz)
    connector._raise_for_code(METHOD_BIND, node)


async def settle(
    connector: AlipayConnector, *, out_request_no: str, trade_no: str, lines: list[RoyaltyLine], finish: bool
) -> SettleResult:
    """Split a paid trade; idempotent by out_request_no at Alipay. `finish` unfreezes the rest for the seller."""
    biz: dict[str, Any] = {
        "out_request_no": out_request_no,
        "trade_no": trade_no,
        "royalty_mode": "sync",
        "royalty_parameters": [
            {
                "royalty_type": "transfer",
                "trans_in_type": line.trans_in_type,
                "trans_in": line.trans_in,
                "amount": fen_to_yuan(line.amount_minor),
                "desc": line.desc,
            }
            for line in lines
        ],
    }
    if finish:
        biz["extend_params"] = {"royalty_finish": "true"}
    node = await connector._call(METHOD_SETTLE, biz)
    connector._raise_for_code(METHOD_SETTLE, node)
    return SettleResult(trade_no=str(node.get("trade_no", trade_no)), settle_no=node.get("settle_no"))


async def settle_query(connector: AlipayConnector, *, out_request_no: str, trade_no: str) -> list[SettleDetail]:
    node = await connector._call(METHOD_SETTLE_QUERY, {"out_request_no": out_request_no, "trade_no": trade_no})
    connector._raise_for_code(METHOD_SETTLE_QUERY, node)
    return [
        SettleDetail(
            trans_in=str(d.get("trans_in", "")),
            amount_minor=yuan_to_fen(str(d.get("amount", "0"))),
            state=str(d.get("state", "PROCESSING")),
        )
        for d in node.get("royalty_detail_list", [])
        if d.get("operation_type", "transfer") == "transfer"
    ]
