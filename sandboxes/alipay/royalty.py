"""Alipay royalty (分账, docs/protocols/alipay.md §9) in the sandbox: relation bind, `alipay.trade.order.settle`,
`alipay.trade.order.settle.query`.

Strict: the trade must be paid (`TRADE_SUCCESS`) and created with `extend_params.royalty_freeze="true"`;
every `trans_in` must have been bound first (else `ACQ.TRANS_IN_NOT_BIND`, hedged: Alipay's exact
sub_code is not in docs/protocols/alipay.md); amounts are yuan strings; the settled total may not exceed what the
trade has left after refunds and earlier settles (`ACQ.ROYALTY_AMOUNT_EXCEED`, same hedge). Settles
finish at once (`SUCCESS`); `royalty_finish: "true"` unfreezes the rest for the seller. Same
out_request_no + same request → the same answer; another request → `ACQ.DUPLICATE_REQUEST`.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Any

from sandboxes.alipay.trades import TRADE_SUCCESS, TRADES, BizError, TradeBook, invalid, parse_yuan, yuan

RELATIONS, SETTLES = "royalty_relations", "royalty_settles"
TRANS_IN_TYPES = frozenset({"userId", "loginName", "cardAliasNo", "openId"})
ROYALTY_PARAMETERS_MAX = 50

METHODS = (
    "alipay.trade.royalty.relation.bind",
    "alipay.trade.royalty.relation.unbind",
    "alipay.trade.royalty.relation.batchquery",
    "alipay.trade.order.settle",
    "alipay.trade.order.settle.query",
)
PAGE_SIZE_MAX = 100


def _request_no(biz: dict[str, Any]) -> str:
    value = biz.get("out_request_no")
    if not isinstance(value, str) or not value or len(value) > 64:
        raise invalid("out_request_no is required (≤ 64 characters)")
    return value


def bind(trades: TradeBook, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
    _request_no(biz)
    for receiver in _receivers(biz):
        relation = {
            "app_id": app_id,
            "type": receiver["type"],
            "account": receiver["account"],
            "name": receiver.get("name"),
            "memo": receiver.get("memo"),
        }
        trades.store.put(RELATIONS, f"{app_id}:{receiver['type']}:{receiver['account']}", relation)
    return {"result_code": "SUCCESS"}


def _receivers(biz: dict[str, Any]) -> list[dict[str, Any]]:
    receivers = biz.get("receiver_list")
    if not isinstance(receivers, list) or not receivers:
        raise invalid("receiver_list is required")
    for receiver in receivers:
        if not isinstance(receiver, dict) or receiver.get("type") not in TRANS_IN_TYPES or not receiver.get("account"):
            raise invalid("each receiver needs type (userId|loginName|...) and account")
    return receivers


def unbind(trades: TradeBook, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
    """alipay.trade.royalty.relation.unbind: the receivers can no longer be settled to (idempotent)."""
    _request_no(biz)
    for receiver in _receivers(biz):
        trades.store.delete(RELATIONS, f"{app_id}:{receiver['type']}:{receiver['account']}")
    return {"result_code": "SUCCESS"}


def batch_query(trades: TradeBook, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
    """alipay.trade.royalty.relation.batchquery: this app's bound receivers, a page at a time."""
    _request_no(biz)
    page_num, page_size = biz.get("page_num", 1), biz.get("page_size", 20)
    if not (
        isinstance(page_num, int) and page_num >= 1 and isinstance(page_size, int) and 1 <= page_size <= PAGE_SIZE_MAX
    ):
        raise invalid(f"page_num ≥ 1 and page_size 1..{PAGE_SIZE_MAX} (integers)")
    bound = sorted(
        (r for r in trades.store.list(RELATIONS) if r.get("app_id") == app_id), key=lambda r: (r["type"], r["account"])
    )
    page = bound[(page_num - 1) * page_size : page_num * page_size]
    return {
        "result_code": "SUCCESS",
        "total_page_num": max(1, -(-len(bound) // page_size)),
        "total_record_num": len(bound),
        "current_page_num": page_num,
        "current_page_size": len(page),
        "receiver_list": [{k: v for k, v in r.items() if v is not None and k != "app_id"} for r in page],
    }


def _settled_fen(trades: TradeBook, app_id: str, trade_no: str) -> int:
    return sum(
        int(d["amount_fen"]) for d in trades.store.list(SETTLES) if d["app_id"] == app_id and d["trade_no"] == trade_no
    )


def settle(trades: TradeBook, app_id: str, biz: dict[str, Any], now: datetime) -> dict[str, Any]:
    out_request_no = _request_no(biz)
    trade_no = biz.get("trade_no")
    if not isinstance(trade_no, str) or not trade_no:
        raise invalid("trade_no is required")
    key = f"{app_id}:{out_request_no}"
    fingerprint = json.dumps(biz, sort_keys=True, ensure_ascii=False, default=str)  # Decimal amounts
    existing = trades.store.get(SETTLES, key)
    if existing is not None:
        if existing["fingerprint"] != fingerprint:
            raise BizError("ACQ.DUPLICATE_REQUEST", "out_request_no was used with another request")
        return {"trade_no": trade_no, "settle_no": existing["settle_no"]}
    trade = trades.existing(app_id, {"trade_no": trade_no})
    if trade["status"] != TRADE_SUCCESS:
        raise BizError("ACQ.TRADE_STATUS_ERROR", f"交易状态不合法: {trade['status']}")
    if not trade.get("royalty_freeze"):
        raise BizError("ACQ.TRADE_SETTLE_ERROR", "the trade was not created with royalty_freeze")
    if trade.get("royalty_finished"):
        raise BizError("ACQ.TRADE_SETTLE_ERROR", "the trade's royalty is already finished")
    parameters = biz.get("royalty_parameters")
    if not isinstance(parameters, list) or not 1 <= len(parameters) <= ROYALTY_PARAMETERS_MAX:
        raise invalid(f"royalty_parameters: 1..{ROYALTY_PARAMETERS_MAX} entries")
    details: list[dict[str, Any]] = []
    for parameter in parameters:
        if not isinstance(parameter, dict) or parameter.get("royalty_type", "transfer") != "transfer":
            raise invalid("royalty_type must be transfer")
        trans_in_type, trans_in = parameter.get("trans_in_type", "userId"), parameter.get("trans_in")
        if trans_in_type not in TRANS_IN_TYPES or not isinstance(trans_in, str) or not trans_in:
            raise invalid("trans_in and a valid trans_in_type are required")
        if trades.store.get(RELATIONS, f"{app_id}:{trans_in_type}:{trans_in}") is None:
            raise BizError("ACQ.TRANS_IN_NOT_BIND", f"{trans_in} is not bound to this app (royalty.relation.bind)")
        details.append(
            {
                "trans_in": trans_in,
                "trans_in_type": trans_in_type,
                "amount_fen": parse_yuan(parameter.get("amount"), "amount"),
                "desc": parameter.get("desc"),
            }
        )
    total = sum(d["amount_fen"] for d in details)
    left = trade["total_fen"] - trade.get("refunded_fen", 0) - _settled_fen(trades, app_id, trade_no)
    if total > left:
        raise BizError("ACQ.ROYALTY_AMOUNT_EXCEED", f"settle {yuan(total)} exceeds the {yuan(left)} left")
    settle_no = f"2026{secrets.randbelow(10**24):024d}"
    trades.store.put(
        SETTLES,
        key,
        {
            "app_id": app_id,
            "trade_no": trade_no,
            "out_request_no": out_request_no,
            "settle_no": settle_no,
            "fingerprint": fingerprint,
            "amount_fen": total,
            "details": details,
            "executed_at": now.isoformat(),
        },
    )
    finish = str((biz.get("extend_params") or {}).get("royalty_finish", "")).lower() == "true"
    if finish:
        trades.store.update(
            TRADES, TradeBook.key(app_id, trade["out_trade_no"]), lambda d: {**d, "royalty_finished": True}
        )
    return {"trade_no": trade_no, "settle_no": settle_no}


def settle_query(trades: TradeBook, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
    document = trades.store.get(SETTLES, f"{app_id}:{_request_no(biz)}")
    if document is None or (biz.get("trade_no") and biz["trade_no"] != document["trade_no"]):
        raise BizError("ACQ.TRADE_NOT_EXIST", "分账请求不存在")
    return {
        "out_request_no": document["out_request_no"],
        "settle_no": document["settle_no"],
        "operation_dt": document["executed_at"],
        "royalty_detail_list": [
            {
                "operation_type": "transfer",
                "trans_in": d["trans_in"],
                "trans_in_type": d["trans_in_type"],
                "amount": yuan(d["amount_fen"]),
                "state": "SUCCESS",
                "execute_dt": document["executed_at"],
            }
            for d in document["details"]
        ],
    }
