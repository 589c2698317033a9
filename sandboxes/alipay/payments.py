"""In-store and in-app payments on the Alipay sandbox: 付款码 (`alipay.trade.pay`, scene `bar_code`),
JSAPI / mini-program (`alipay.trade.create`) and the OAuth that yields the payer's `buyer_id`
(`alipay.system.oauth.token`). docs/protocols/alipay.md §3 (code 10003), §5.

- The sandbox plays the payer's Alipay app: `POST /control/payer-codes` shows a 付款码 (16–24 digits
  starting 25–30, here 18; single use, valid a minute) that may demand the payment password, and
  `POST /control/oauth-codes` is a user authorising the merchant's H5 / mini-program (an `auth_code`).
- `alipay.trade.pay` charges the code at once (10000, `TRADE_SUCCESS`) or, when the password is
  demanded, answers 10003 with the trade `WAIT_BUYER_PAY` until the payer confirms
  (`/control/trades/{no}/approve`) or the merchant cancels it (`alipay.trade.cancel`) at its deadline.
- `alipay.trade.create` opens a `WAIT_BUYER_PAY` trade for a known `buyer_id` (or `buyer_open_id`);
  the mini-program's `my.tradePay` is `/control/trades/{no}/approve`.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from sandboxes.alipay.trades import TRADE_SUCCESS, TRADES, BizError, TradeBook, invalid, yuan
from sandboxes.common.store import DocumentStore

METHODS = ("alipay.trade.pay", "alipay.trade.create", "alipay.system.oauth.token")
PAYER_CODES, OAUTH_CODES, TOKENS = "payer_codes", "oauth_codes", "oauth_tokens"
AUTH_CODE = re.compile(r"^(2[5-9]|30)[0-9]{14,22}$")  # 付款码: 16-24 digits starting 25..30
SCENES = frozenset({"bar_code", "security_code"})
CODE_TTL = timedelta(seconds=60)
OAUTH_CODE_TTL = timedelta(minutes=10)
TOKEN_SECONDS, REFRESH_SECONDS = 1_296_000, 2_592_000  # 15 and 30 days, as Alipay issues them
BUYER_ID = re.compile(r"^2088[0-9]{12}$")
CODE_INVALID = "支付失败，获取顾客账户信息失败，请顾客刷新付款码后重新收款"


def _buyer() -> tuple[str, str]:
    return "2088" + f"{secrets.randbelow(10**12):012d}", f"{secrets.token_hex(2)}***@sandbox.com"


def issue_payer_code(
    store: DocumentStore, now: datetime, *, password_required: bool, balance_minor: int | None
) -> dict[str, Any]:
    code = f"{25 + secrets.randbelow(6)}" + f"{secrets.randbelow(10**16):016d}"
    buyer_id, logon_id = _buyer()
    store.put(
        PAYER_CODES,
        code,
        {
            "code": code,
            "password_required": password_required,
            "used": False,
            "balance_minor": balance_minor,
            "buyer_id": buyer_id,
            "buyer_logon_id": logon_id,
            "expires_at": (now + CODE_TTL).isoformat(),
        },
    )
    return {
        "auth_code": code,
        "password_required": password_required,
        "buyer_id": buyer_id,
        "expires_at": (now + CODE_TTL).isoformat(),
    }


def issue_oauth_code(store: DocumentStore, now: datetime, app_id: str, buyer_id: str | None) -> dict[str, Any]:
    code = secrets.token_hex(16)
    buyer = buyer_id or _buyer()[0]
    store.put(
        OAUTH_CODES,
        code,
        {"app_id": app_id, "user_id": buyer, "used": False, "expires_at": (now + OAUTH_CODE_TTL).isoformat()},
    )
    return {"auth_code": code, "user_id": buyer}


class OauthCodeInvalid(Exception):
    """Alipay answers a bad `code` in an `error_response` node (40002 isv.code-invalid)."""


def oauth_token(store: DocumentStore, now: datetime, app_id: str, params: dict[str, str]) -> dict[str, Any]:
    """`grant_type=authorization_code&code=…` (or `refresh_token`) as common parameters, no biz_content."""
    grant = params.get("grant_type")
    if grant == "authorization_code":
        entry = store.get(OAUTH_CODES, params.get("code", ""))
        if (
            entry is None
            or entry["used"]
            or entry["app_id"] != app_id
            or datetime.fromisoformat(entry["expires_at"]) < now
        ):
            raise OauthCodeInvalid("授权码code无效")
        store.put(OAUTH_CODES, params["code"], {**entry, "used": True})
        user_id = entry["user_id"]
    elif grant == "refresh_token":
        token = store.get(TOKENS, "refresh:" + params.get("refresh_token", ""))
        if token is None or token["app_id"] != app_id:
            raise OauthCodeInvalid("刷新令牌refresh_token无效")
        user_id = token["user_id"]
    else:
        raise OauthCodeInvalid("grant_type must be authorization_code or refresh_token")
    access, refresh = "authusrB" + secrets.token_hex(16), "authusrB" + secrets.token_hex(16)
    store.put(TOKENS, "refresh:" + refresh, {"app_id": app_id, "user_id": user_id})
    return {
        "user_id": user_id,
        "access_token": access,
        "expires_in": TOKEN_SECONDS,
        "refresh_token": refresh,
        "re_expires_in": REFRESH_SECONDS,
        "auth_start": now.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _paid_fields(trade: dict[str, Any], beijing_time: str) -> dict[str, Any]:
    amount = yuan(trade["total_fen"])
    return {
        "buyer_user_id": trade["buyer_id"],
        "total_amount": amount,
        "receipt_amount": amount,
        "buyer_pay_amount": amount,
        "invoice_amount": amount,
        "point_amount": "0.00",
        "gmt_payment": beijing_time,
        "fund_bill_list": [{"fund_channel": "ALIPAYACCOUNT", "amount": amount}],
    }


def barcode_pay(
    trades: TradeBook, app_id: str, biz: dict[str, Any], notify_url: str | None, beijing_now: str
) -> dict[str, Any]:
    """alipay.trade.pay → the node (without code/msg for success, which the caller adds) or 10003."""
    if biz.get("scene") not in SCENES:
        raise invalid("scene must be bar_code (or security_code)")
    auth_code = biz.get("auth_code")
    if not isinstance(auth_code, str) or AUTH_CODE.fullmatch(auth_code) is None:
        raise BizError("ACQ.PAYMENT_AUTH_CODE_INVALID", CODE_INVALID)
    out_trade_no = biz.get("out_trade_no")
    current = trades.store.get(TRADES, TradeBook.key(app_id, str(out_trade_no))) if out_trade_no else None
    if current is None:
        code = trades.store.get(PAYER_CODES, auth_code)
        if code is None or code["used"] or datetime.fromisoformat(code["expires_at"]) < trades.clock():
            raise BizError("ACQ.PAYMENT_AUTH_CODE_INVALID", CODE_INVALID)
        trade = trades.create(app_id=app_id, method="alipay.trade.pay", biz=biz, notify_url=notify_url, return_url=None)
        trades.store.put(PAYER_CODES, auth_code, {**code, "used": True})
        if code["balance_minor"] is not None and trade["total_fen"] > code["balance_minor"]:
            trades.close(trade)
            raise BizError("ACQ.BUYER_BALANCE_NOT_ENOUGH", "买家余额不足")
        trade = trades.store.update(
            TRADES,
            TradeBook.key(app_id, trade["out_trade_no"]),
            lambda d: {**d, "buyer_id": code["buyer_id"], "buyer_logon_id": code["buyer_logon_id"]},
        )
        if not code["password_required"]:
            trade = trades.pay(trade)
    else:  # the same request again: the trade's current answer
        trade = (
            trades.create(app_id=app_id, method="alipay.trade.pay", biz=biz, notify_url=notify_url, return_url=None)
            if current["status"] != TRADE_SUCCESS
            else current
        )
    fields: dict[str, Any] = {
        "trade_no": trade["trade_no"],
        "out_trade_no": trade["out_trade_no"],
        "buyer_logon_id": trade["buyer_logon_id"],
    }
    if trade["status"] == TRADE_SUCCESS:
        return {"code": "10000", "msg": "Success", **fields, **_paid_fields(trade, beijing_now)}
    return {"code": "10003", "msg": " order success pay inprocess", **fields, "total_amount": yuan(trade["total_fen"])}


def create_trade(trades: TradeBook, app_id: str, biz: dict[str, Any], notify_url: str | None) -> dict[str, Any]:
    """alipay.trade.create (JSAPI / mini-program): needs the payer, `buyer_id` from the OAuth above."""
    buyer_id, open_id = biz.get("buyer_id"), biz.get("buyer_open_id")
    if not (isinstance(buyer_id, str) and BUYER_ID.fullmatch(buyer_id)) and not (isinstance(open_id, str) and open_id):
        raise invalid("buyer_id (2088…) or buyer_open_id is required")
    trade = trades.create(app_id=app_id, method="alipay.trade.create", biz=biz, notify_url=notify_url, return_url=None)
    if trade.get("buyer_id") is None:
        trade = trades.store.update(
            TRADES,
            TradeBook.key(app_id, trade["out_trade_no"]),
            lambda d: {
                **d,
                "buyer_id": buyer_id or "2088" + f"{secrets.randbelow(10**12):012d}",
                "buyer_logon_id": f"{secrets.token_hex(2)}***@sandbox.com",
            },
        )
    return {"out_trade_no": trade["out_trade_no"], "trade_no": trade["trade_no"]}
