"""Alipay transfers to an Alipay account (单笔转账): `alipay.fund.trans.uni.transfer`,
`alipay.fund.trans.common.query`, `alipay.fund.account.query` (docs/protocols/alipay.md §7: certificate mode only).

The sandbox keeps one balance per app (the merchant's 余额, `/control/apps/{app_id}/balance`, default
1,000,000.00 yuan); a transfer moves money out of it at once (`status=SUCCESS`) or is refused:
`PAYER_BALANCE_NOT_ENOUGH`, `PAYEE_NOT_EXIST` (payee marked unknown through the control API),
`PAYEE_USER_INFO_ERROR` (a logon-id payee without the right `name`). `out_biz_no` is the
idempotency key: the same request answers the same order; another request with it is refused.
Sub-codes follow Alipay's fund API pages [M]; the product is `TRANS_ACCOUNT_NO_PWD`, scene
`DIRECT_TRANSFER`.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from sandboxes.alipay.trades import BizError, invalid, parse_yuan, yuan
from sandboxes.common.store import DocumentStore

METHODS = ("alipay.fund.trans.uni.transfer", "alipay.fund.trans.common.query", "alipay.fund.account.query")
TRANSFERS, BALANCES, PAYEES = "fund_transfers", "fund_balances", "fund_payees"
DEFAULT_BALANCE_FEN = 100_000_000
IDENTITY_TYPES = frozenset({"ALIPAY_USER_ID", "ALIPAY_LOGON_ID", "ALIPAY_OPEN_ID"})
OUT_BIZ_NO = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def balance_fen(store: DocumentStore, app_id: str) -> int:
    entry = store.get(BALANCES, app_id)
    return DEFAULT_BALANCE_FEN if entry is None else int(entry["available_fen"])


def set_balance(store: DocumentStore, app_id: str, available_fen: int) -> None:
    store.put(BALANCES, app_id, {"available_fen": available_fen})


def mark_payee(store: DocumentStore, identity: str, *, exists: bool, name: str | None) -> None:
    store.put(PAYEES, identity, {"exists": exists, "name": name})


def _view(order: dict[str, Any]) -> dict[str, Any]:
    return {
        "out_biz_no": order["out_biz_no"],
        "order_id": order["order_id"],
        "pay_fund_order_id": order["pay_fund_order_id"],
        "status": order["status"],
        "trans_date": order["trans_date"],
    }


def transfer(store: DocumentStore, app_id: str, biz: dict[str, Any], beijing_now: str) -> dict[str, Any]:
    out_biz_no = biz.get("out_biz_no")
    if not isinstance(out_biz_no, str) or OUT_BIZ_NO.fullmatch(out_biz_no) is None:
        raise invalid("out_biz_no must be 1-64 letters, digits, _ or -")
    if (
        biz.get("product_code") != "TRANS_ACCOUNT_NO_PWD"
        or biz.get("biz_scene", "DIRECT_TRANSFER") != "DIRECT_TRANSFER"
    ):
        raise BizError("INVALID_PARAMETER", "product_code must be TRANS_ACCOUNT_NO_PWD, biz_scene DIRECT_TRANSFER")
    amount_fen = parse_yuan(biz.get("trans_amount"), "trans_amount")
    payee = biz.get("payee_info")
    if not isinstance(payee, dict) or payee.get("identity_type") not in IDENTITY_TYPES or not payee.get("identity"):
        raise BizError("INVALID_PARAMETER", "payee_info{identity, identity_type} is required")
    if biz.get("order_title") is not None and not isinstance(biz["order_title"], str):
        raise BizError("INVALID_PARAMETER", "order_title must be a string")
    fingerprint = json.dumps(biz, sort_keys=True, ensure_ascii=False, default=str)
    key = f"{app_id}:{out_biz_no}"
    with store.transaction():
        existing = store.get(TRANSFERS, key)
        if existing is not None:
            if existing["fingerprint"] != fingerprint:
                raise BizError("ORDER_NO_REPEAT", "out_biz_no was used with another request")  # [L]
            return _view(existing)
        known = store.get(PAYEES, str(payee["identity"]))
        if known is not None and not known["exists"]:
            raise BizError("PAYEE_NOT_EXIST", "收款账号不存在")
        if payee["identity_type"] == "ALIPAY_LOGON_ID" and not payee.get("name"):
            raise BizError("PAYEE_USER_INFO_ERROR", "支付宝登录号转账需要收款方真实姓名")
        if known is not None and known.get("name") and payee.get("name") not in (None, known["name"]):
            raise BizError("PAYEE_USER_INFO_ERROR", "收款方姓名与账户不符")
        available = balance_fen(store, app_id)
        if amount_fen > available:
            raise BizError("PAYER_BALANCE_NOT_ENOUGH", "付款方余额不足")
        set_balance(store, app_id, available - amount_fen)
        order = {
            "app_id": app_id,
            "out_biz_no": out_biz_no,
            "fingerprint": fingerprint,
            "amount_fen": amount_fen,
            "order_id": "2026" + f"{secrets.randbelow(10**28):028d}",
            "pay_fund_order_id": "2026" + f"{secrets.randbelow(10**28):028d}",
            "status": "SUCCESS",
            "trans_date": beijing_now,
            "payee": payee,
        }
        store.put(TRANSFERS, key, order)
    return _view(order)


def query(store: DocumentStore, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
    out_biz_no, order_id = biz.get("out_biz_no"), biz.get("order_id")
    if not out_biz_no and not order_id:
        raise BizError("INVALID_PARAMETER", "out_biz_no or order_id is required")
    order = (
        store.get(TRANSFERS, f"{app_id}:{out_biz_no}")
        if out_biz_no
        else next((o for o in store.list(TRANSFERS) if o["app_id"] == app_id and o["order_id"] == order_id), None)
    )
    if order is None or (order_id and order["order_id"] != order_id):
        raise BizError("ORDER_NOT_EXIST", "转账订单不存在")
    return {
        **_view(order),
        "trans_amount": yuan(order["amount_fen"]),
        "pay_date": order["trans_date"],
        "arrival_time_end": order["trans_date"],
        "order_fee": "0.00",
    }


def account(store: DocumentStore, app_id: str, seller_id: str, biz: dict[str, Any]) -> dict[str, Any]:
    if biz.get("alipay_user_id") != seller_id:
        raise BizError("INVALID_PARAMETER", "alipay_user_id must be this app's merchant PID")
    if biz.get("account_type", "ACCTRANS_ACCOUNT") != "ACCTRANS_ACCOUNT":
        raise BizError("INVALID_PARAMETER", "account_type must be ACCTRANS_ACCOUNT")
    return {"available_amount": yuan(balance_fen(store, app_id)), "freeze_amount": "0.00"}
