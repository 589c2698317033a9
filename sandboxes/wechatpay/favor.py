"""微信支付代金券 (WeChat Pay v3 cash coupons, "favor"): stocks, sending, queries, COUPON.USE
(docs/protocols/wechatpay.md §14).

Why a sandbox of it: Juhe mirrors its campaigns at the channel (a stock per campaign, a coupon sent to
a payer's openid) and must process what the channel reports back — the `COUPON.USE` callback and the
`promotion_detail[]` of the payment — so that the ledger knows who funded each discount. This module
speaks the channel's own API so the connector is proved against it (and the public `wechatpayv3` SDK's
`marketing_favor_*` calls work unmodified, `tests/test_sdk_conformance.py`).

Facts relied on [H: pay.weixin.qq.com 代金券 pages, wechatpayv3 `marketing.py`; L where marked]:
- `POST /v3/marketing/favor/coupon-stocks` creates a stock `unactivated`; `max_amount` must equal
  `coupon_amount × max_coupons` ("批次预算等于批次面额乘以发券数"); the begin time may not be in the
  past (the sandbox allows `clock_skew_seconds_max` of skew [L]), at most 365 days ahead; the window at
  most 90 days. `out_request_no` makes a retry answer the same stock.
- `…/stocks/{id}/start|pause|restart|stop` (body `{stock_creator_mchid}`) answer `{stock_id, start_time |
  pause_time | restart_time | stop_time}`; repeating the call that led to the current state answers
  again (any other call from there: 400 `INVALID_REQUEST`) [L].
  States: `unactivated → running ⇄ paused → stoped` (WeChat's spelling).
- `POST /v3/marketing/favor/users/{openid}/coupons` sends one coupon of a running stock, idempotent by
  the sender's `out_request_no`; the budget (`max_coupons`, `max_amount_by_day`) → 403 `NOT_ENOUGH`
  [L: code], the per-user cap `max_coupons_per_user` → 403 `RULE_LIMIT` (用户已达最大领券次数).
- Only the creator may send here (cross-merchant sending needs an authorisation the sandbox does not
  model) → 403 `NO_AUTH`.
- A payer uses a coupon when paying (in the sandbox: the control API's approve / payer code carries
  `coupon_id`): the merchant (or sub-merchant) must be in `available_merchants`, the order must reach
  `transaction_minimum`. The payment's `amount.payer_total` is `total − amount` and its
  `promotion_detail[]` names who funded the discount: the stock's creator when it is the paid merchant
  (`merchant_contribute`), WeChat for a stock WeChat runs itself (`POST /control/favor/stocks`,
  `wechatpay_contribute`), another merchant otherwise (`other_contribute`). `type` is `CASH` for a
  prepaid (预充值, `no_cash=false`) stock and `NOCASH` for 免充值.
- The stock creator's callback URL (`POST /v3/marketing/favor/callbacks`) receives `COUPON.USE`
  (resource `original_type = coupon`, AES-256-GCM with the creator's APIv3 key: the coupon with its
  `consume_information`). The sandbox retries it on the common WeChat schedule (the real one retries
  9 × at one minute) [L].
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from sandboxes.common.store import Document
from sandboxes.wechatpay.sandbox import ControlError, Sandbox, WxError, _digits, now_cst, rfc3339

if TYPE_CHECKING:  # app.py builds the object and imports this module
    from sandboxes.wechatpay.app import V3Http

STOCKS = "favor_stocks"
STOCK_REQUESTS = "favor_stock_requests"
COUPONS = "favor_coupons"
SENDS = "favor_sends"
USER_COUNTS = "favor_user_counts"
DAY_AMOUNTS = "favor_day_amounts"
CALLBACKS = "favor_callbacks"
WECHATPAY_CREATOR = "wechatpay"  # the creator of a stock WeChat itself funds (立减/平台活动)

STOCK_FIELDS = frozenset(
    {
        "stock_name",
        "comment",
        "belong_merchant",
        "available_begin_time",
        "available_end_time",
        "stock_use_rule",
        "pattern_info",
        "coupon_use_rule",
        "no_cash",
        "stock_type",
        "out_request_no",
        "ext_info",
    }
)
USE_RULE_FIELDS = frozenset(
    {
        "max_coupons",
        "max_amount",
        "max_amount_by_day",
        "max_coupons_per_user",
        "natural_person_limit",
        "prevent_api_abuse",
    }
)
COUPON_RULE_FIELDS = frozenset(
    {
        "coupon_available_time",
        "fixed_normal_coupon",
        "goods_tag",
        "trade_type",
        "combine_use",
        "available_items",
        "unavailable_items",
        "available_merchants",
    }
)
SEND_FIELDS = frozenset(
    {"stock_id", "out_request_no", "appid", "stock_creator_mchid", "coupon_value", "coupon_minimum"}
)
REQUEST_NO = re.compile(r"[0-9A-Za-z_\-|*]{1,128}")
WINDOW_DAYS_MAX = 90
BEGIN_DAYS_AHEAD_MAX = 365
COUPONS_PER_USER_MAX = 100
TRANSITIONS: dict[str, tuple[frozenset[str], str, str]] = {
    # action: (states it may start from, resulting state, the time field it answers)
    "start": (frozenset({"unactivated"}), "running", "start_time"),
    "pause": (frozenset({"running"}), "paused", "pause_time"),
    "restart": (frozenset({"paused"}), "running", "restart_time"),
    "stop": (frozenset({"unactivated", "running", "paused"}), "stoped", "stop_time"),
}


def _fen(container: dict[str, Any], name: str, where: str, *, minimum: int = 1, required: bool = True) -> int | None:
    value = container.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or value > 10**12:
        raise WxError(400, "PARAM_ERROR", f"{where}.{name} must be an integer ≥ {minimum}")
    return value


def _time(body: dict[str, Any], name: str) -> datetime:
    value = body.get(name)
    if not isinstance(value, str):
        raise WxError(400, "PARAM_ERROR", f"{name} is required (RFC 3339)")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise WxError(400, "PARAM_ERROR", f"{name} is not an RFC 3339 time") from exc
    if moment.tzinfo is None:
        raise WxError(400, "PARAM_ERROR", f"{name} needs a time zone offset")
    return moment


def request_number_reused() -> WxError:
    """A request number (out_request_no, use_request_no, …) sent again with other parameters."""
    return WxError(400, "INVALID_REQUEST", "request number already used with different parameters")


def page_of(
    items: list[dict[str, Any]], query: dict[str, str], *, limit_default: int, limit_max: int | None = None
) -> dict[str, Any]:
    """The query's `offset` / `limit` page of `items`, as WeChat's lists answer it (bad numbers → 400)."""
    try:
        offset, limit = int(query.get("offset", "0")), int(query.get("limit", str(limit_default)))
    except ValueError as exc:
        raise WxError(400, "PARAM_ERROR", "offset and limit are integers") from exc
    if offset < 0 or limit < 1 or (limit_max is not None and limit > limit_max):
        raise WxError(400, "PARAM_ERROR", f"offset ≥ 0, limit 1..{limit_max or 'any'}")
    return {"data": items[offset : offset + limit], "total_count": len(items), "offset": offset, "limit": limit}


def _fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class WechatStockRequest(BaseModel):
    """A stock WeChat itself runs and funds (e.g. a 微信支付 立减 campaign) usable at the listed merchants."""

    model_config = ConfigDict(extra="forbid")

    stock_name: str = Field(min_length=1, max_length=20)
    coupon_amount: int = Field(ge=1, le=10**9)
    transaction_minimum: int = Field(ge=2, le=10**12)
    max_coupons: int = Field(ge=1, le=10**6)
    max_coupons_per_user: int = Field(default=1, ge=1, le=COUPONS_PER_USER_MAX)
    available_merchants: list[str] = Field(min_length=1, max_length=50)
    no_cash: bool = False
    available_days: int = Field(default=30, ge=1, le=WINDOW_DAYS_MAX)


class WechatSendRequest(BaseModel):
    """WeChat gives one of its own stock's coupons to a user (as its campaigns do)."""

    model_config = ConfigDict(extra="forbid")

    openid: str = Field(min_length=1, max_length=128)
    appid: str = Field(min_length=1, max_length=128)


class Favor:
    """The stocks and coupons of 代金券, in the sandbox's document store."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.store = sandbox.store
        sandbox.coupon_promotion = self.promotion
        sandbox.coupon_used = self.use

    # ------------------------------------------------------------------ stocks
    def create_stock(self, merchant: Document, body: dict[str, Any]) -> dict[str, Any]:
        """Idempotent by (creator, out_request_no): the same request again answers the stock it created, even
        when its begin time has passed meanwhile (a creator retrying after a lost answer) [L: the real channel
        answers a repeated request number with the first result]; the checks below apply to a new request."""
        unknown = sorted(set(body) - STOCK_FIELDS)
        if unknown:
            raise WxError(400, "PARAM_ERROR", f"unknown fields: {', '.join(unknown)}")
        out_request_no = body.get("out_request_no")
        if not isinstance(out_request_no, str) or not REQUEST_NO.fullmatch(out_request_no):
            raise WxError(400, "PARAM_ERROR", "out_request_no: 1-128 chars of [0-9A-Za-z_-|*]")

        def create() -> dict[str, Any]:
            stock = self._new_stock(merchant, body)
            self.store.put(STOCKS, stock["stock_id"], stock)
            return {"stock_id": stock["stock_id"], "create_time": stock["create_time"]}

        request_key = f"{merchant['mchid']}:{out_request_no}"
        return self.store.once(STOCK_REQUESTS, request_key, _fingerprint(body), create, request_number_reused)

    def _new_stock(self, merchant: Document, body: dict[str, Any]) -> dict[str, Any]:
        """A new stock from a create request, every rule checked (nothing is stored here)."""
        name = body.get("stock_name")
        if not isinstance(name, str) or not 1 <= len(name) <= 20 or any(c in name for c in "_,;|"):
            raise WxError(400, "PARAM_ERROR", "stock_name: 1-20 characters, none of _ , ; |")
        if body.get("belong_merchant") != merchant["mchid"]:
            raise WxError(400, "PARAM_ERROR", "belong_merchant must be the creating mchid")
        if body.get("stock_type", "NORMAL") != "NORMAL":
            raise WxError(400, "PARAM_ERROR", "stock_type must be NORMAL (固定面额满减券)")
        if not isinstance(body.get("no_cash", False), bool):
            raise WxError(400, "PARAM_ERROR", "no_cash must be a boolean")
        begin, end = _time(body, "available_begin_time"), _time(body, "available_end_time")
        now = now_cst()
        if begin < now - timedelta(seconds=self.sandbox.settings.clock_skew_seconds_max):
            raise WxError(400, "PARAM_ERROR", "available_begin_time may not be earlier than now")
        if begin > now + timedelta(days=BEGIN_DAYS_AHEAD_MAX):
            raise WxError(400, "PARAM_ERROR", "a stock may not begin more than 365 days ahead")
        if not begin < end <= begin + timedelta(days=WINDOW_DAYS_MAX):
            raise WxError(400, "PARAM_ERROR", "the available window must end after it begins, within 90 days")
        use_rule, coupon_rule = body.get("stock_use_rule"), body.get("coupon_use_rule")
        if not isinstance(use_rule, dict) or not isinstance(coupon_rule, dict):
            raise WxError(400, "PARAM_ERROR", "stock_use_rule and coupon_use_rule are required objects")
        if set(use_rule) - USE_RULE_FIELDS or set(coupon_rule) - COUPON_RULE_FIELDS:
            raise WxError(400, "PARAM_ERROR", "unknown fields in stock_use_rule or coupon_use_rule")
        fixed = coupon_rule.get("fixed_normal_coupon")
        if not isinstance(fixed, dict) or set(fixed) != {"coupon_amount", "transaction_minimum"}:
            raise WxError(400, "PARAM_ERROR", "coupon_use_rule.fixed_normal_coupon{coupon_amount, transaction_minimum}")
        amount = _fen(fixed, "coupon_amount", "fixed_normal_coupon")
        minimum = _fen(fixed, "transaction_minimum", "fixed_normal_coupon")
        assert amount is not None and minimum is not None
        if minimum <= amount:
            raise WxError(
                400, "INVALID_REQUEST", "批次发放规则或核销规则有误: transaction_minimum must exceed coupon_amount"
            )
        max_coupons = _fen(use_rule, "max_coupons", "stock_use_rule")
        max_amount = _fen(use_rule, "max_amount", "stock_use_rule")
        by_day = _fen(use_rule, "max_amount_by_day", "stock_use_rule", required=False)
        per_user = _fen(use_rule, "max_coupons_per_user", "stock_use_rule")
        assert max_coupons is not None and max_amount is not None and per_user is not None
        if max_amount != amount * max_coupons:
            raise WxError(
                400, "PARAM_ERROR", "批次预算等于批次面额乘以发券数 (max_amount = coupon_amount × max_coupons)"
            )
        if by_day is not None and not amount <= by_day <= max_amount:
            raise WxError(400, "PARAM_ERROR", "max_amount_by_day must be between coupon_amount and max_amount")
        if per_user > COUPONS_PER_USER_MAX:
            raise WxError(400, "PARAM_ERROR", "max_coupons_per_user is at most 100")
        merchants = coupon_rule.get("available_merchants")
        if not isinstance(merchants, list) or not merchants or not all(isinstance(m, str) and m for m in merchants):
            raise WxError(400, "PARAM_ERROR", "coupon_use_rule.available_merchants: at least one mchid")
        stock: dict[str, Any] = {
            "stock_id": "1" + _digits(9),
            "stock_creator_mchid": merchant["mchid"],
            "stock_name": name,
            "comment": body.get("comment"),
            "description": (body.get("pattern_info") or {}).get("description", ""),
            "status": "unactivated",
            "create_time": rfc3339(now),
            "available_begin_time": rfc3339(begin),
            "available_end_time": rfc3339(end),
            "coupon_amount": amount,
            "transaction_minimum": minimum,
            "max_coupons": max_coupons,
            "max_amount": max_amount,
            "max_amount_by_day": by_day,
            "max_coupons_per_user": per_user,
            "available_merchants": merchants,
            "combine_use": bool(coupon_rule.get("combine_use", False)),
            "no_cash": bool(body.get("no_cash", False)),
            "distributed_coupons": 0,
            "start_time": None,
            "stop_time": None,
        }
        return stock

    def create_wechat_stock(self, request: WechatStockRequest) -> dict[str, Any]:
        """A stock WeChat funds itself, running at once (control API: the channel's own campaign)."""
        if request.transaction_minimum <= request.coupon_amount:
            raise ControlError(422, "transaction_minimum must exceed coupon_amount")
        now = now_cst()
        stock: dict[str, Any] = {
            "stock_id": "1" + _digits(9),
            "stock_creator_mchid": WECHATPAY_CREATOR,
            "stock_name": request.stock_name,
            "comment": None,
            "description": "微信支付活动",
            "status": "running",
            "create_time": rfc3339(now),
            "available_begin_time": rfc3339(now),
            "available_end_time": rfc3339(now + timedelta(days=request.available_days)),
            "coupon_amount": request.coupon_amount,
            "transaction_minimum": request.transaction_minimum,
            "max_coupons": request.max_coupons,
            "max_amount": request.max_coupons * request.coupon_amount,
            "max_amount_by_day": None,
            "max_coupons_per_user": request.max_coupons_per_user,
            "available_merchants": request.available_merchants,
            "combine_use": False,
            "no_cash": request.no_cash,
            "distributed_coupons": 0,
            "start_time": rfc3339(now),
            "stop_time": None,
        }
        self.store.put(STOCKS, stock["stock_id"], stock)
        return self.stock_view(stock)

    def _own_stock(self, merchant: Document, stock_id: str, creator: Any) -> Document:
        if creator != merchant["mchid"]:
            raise WxError(400, "PARAM_ERROR", "stock_creator_mchid must be the signing mchid")
        stock = self.store.get(STOCKS, stock_id)
        if stock is None or stock["stock_creator_mchid"] != creator:
            raise WxError(404, "RESOURCE_NOT_EXISTS", "批次不存在")
        return stock

    def transition(self, merchant: Document, stock_id: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        if set(body) != {"stock_creator_mchid"}:
            raise WxError(400, "PARAM_ERROR", "the body is exactly {stock_creator_mchid}")
        self._own_stock(merchant, stock_id, body["stock_creator_mchid"])
        sources, target, field = TRANSITIONS[action]

        def move(current: Document) -> Document:
            if current["status"] == target and current.get(field):
                return current  # the call that led here, again: answered again
            if current["status"] not in sources:
                raise WxError(400, "INVALID_REQUEST", f"批次状态不允许此操作 (stock is {current['status']})")
            return {**current, "status": target, field: rfc3339(now_cst())}

        stock = self.store.update(STOCKS, stock_id, move)
        return {"stock_id": stock_id, field: stock[field]}

    def stock_view(self, stock: Document) -> dict[str, Any]:
        view: dict[str, Any] = {
            "stock_id": stock["stock_id"],
            "stock_creator_mchid": stock["stock_creator_mchid"],
            "stock_name": stock["stock_name"],
            "status": stock["status"],
            "create_time": stock["create_time"],
            "description": stock["description"],
            "stock_use_rule": {
                "max_coupons": stock["max_coupons"],
                "max_amount": stock["max_amount"],
                "max_coupons_per_user": stock["max_coupons_per_user"],
                "fixed_normal_coupon": {
                    "coupon_amount": stock["coupon_amount"],
                    "transaction_minimum": stock["transaction_minimum"],
                },
                "coupon_type": "NORMAL",
                "combine_use": stock["combine_use"],
            },
            "available_begin_time": stock["available_begin_time"],
            "available_end_time": stock["available_end_time"],
            "distributed_coupons": stock["distributed_coupons"],
            "no_cash": stock["no_cash"],
            "singleitem": False,
            "stock_type": "NORMAL",
        }
        if stock["max_amount_by_day"] is not None:
            view["stock_use_rule"]["max_amount_by_day"] = stock["max_amount_by_day"]
        for name in ("start_time", "stop_time"):
            if stock.get(name):
                view[name] = stock[name]
        return view

    def get_stock(self, merchant: Document, stock_id: str, query: dict[str, str]) -> dict[str, Any]:
        if set(query) != {"stock_creator_mchid"}:
            raise WxError(400, "PARAM_ERROR", "query must be exactly stock_creator_mchid")
        return self.stock_view(self._own_stock(merchant, stock_id, query["stock_creator_mchid"]))

    def list_stocks(self, merchant: Document, query: dict[str, str]) -> dict[str, Any]:
        if query.get("stock_creator_mchid") != merchant["mchid"]:
            raise WxError(400, "PARAM_ERROR", "stock_creator_mchid must be the signing mchid")
        if set(query) - {"offset", "limit", "stock_creator_mchid", "create_start_time", "create_end_time", "status"}:
            raise WxError(400, "PARAM_ERROR", "unknown query parameters")
        # The SDK puts the times into the URL unencoded: the offset's "+" arrives as a space.
        times: dict[str, Any] = {
            name: query[name].replace(" ", "+") for name in ("create_start_time", "create_end_time") if name in query
        }
        created_from = _time(times, "create_start_time") if "create_start_time" in times else None
        created_to = _time(times, "create_end_time") if "create_end_time" in times else None
        stocks = [
            s
            for s in self.store.list(STOCKS)
            if s["stock_creator_mchid"] == merchant["mchid"]
            and query.get("status") in (None, s["status"])
            and (created_from is None or datetime.fromisoformat(s["create_time"]) >= created_from)
            and (created_to is None or datetime.fromisoformat(s["create_time"]) <= created_to)
        ]
        stocks.sort(key=lambda s: s["create_time"], reverse=True)
        return page_of([self.stock_view(s) for s in stocks], query, limit_default=10, limit_max=10)

    # ------------------------------------------------------------------ coupons
    def send(self, merchant: Document, openid: str, body: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(body) - SEND_FIELDS)
        if unknown:
            raise WxError(400, "PARAM_ERROR", f"unknown fields: {', '.join(unknown)}")
        for name in ("stock_id", "out_request_no", "appid", "stock_creator_mchid"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise WxError(400, "PARAM_ERROR", f"{name} is required")
        if not REQUEST_NO.fullmatch(body["out_request_no"]):
            raise WxError(400, "PARAM_ERROR", "out_request_no: 1-128 chars of [0-9A-Za-z_-|*]")
        if body["appid"] not in merchant["appids"]:
            raise WxError(400, "APPID_MCHID_NOT_MATCH", "appid is not bound to mchid")
        if "coupon_value" in body or "coupon_minimum" in body:
            raise WxError(400, "PARAM_ERROR", "指定面额发券 is not open (coupon_value, coupon_minimum)")
        stock = self.store.get(STOCKS, body["stock_id"])
        if stock is None or stock["stock_creator_mchid"] != body["stock_creator_mchid"]:
            raise WxError(404, "RESOURCE_NOT_EXISTS", "批次不存在")
        if stock["stock_creator_mchid"] != merchant["mchid"]:
            raise WxError(403, "NO_AUTH", "调用方不在可发券商户列表")
        return self._send(stock["stock_id"], openid, body["appid"], merchant["mchid"], body["out_request_no"], body)

    def send_as_wechat(self, stock_id: str, request: WechatSendRequest) -> dict[str, Any]:
        stock = self.store.get(STOCKS, stock_id)
        if stock is None or stock["stock_creator_mchid"] != WECHATPAY_CREATOR:
            raise ControlError(404, f"no WeChat-run stock {stock_id}")
        request_no = "wx" + _digits(20)
        return self._send(stock_id, request.openid, request.appid, WECHATPAY_CREATOR, request_no, {})

    def _send(
        self, stock_id: str, openid: str, appid: str, sender: str, request_no: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Idempotent by (sender, out_request_no); the budget, the day's amount and the user's cap are
        checked and taken in one store transaction, so they hold under concurrent sends."""

        def send() -> dict[str, Any]:
            stock = self.store.get(STOCKS, stock_id)
            assert stock is not None
            now = now_cst()
            if stock["status"] != "running":
                raise WxError(400, "INVALID_REQUEST", f"批次状态不允许发券 (stock is {stock['status']})")
            begin, end = (
                datetime.fromisoformat(stock[name]) for name in ("available_begin_time", "available_end_time")
            )
            if not begin <= now < end:
                raise WxError(400, "INVALID_REQUEST", "活动未开始或已结束")
            if stock["distributed_coupons"] >= stock["max_coupons"]:
                raise WxError(403, "NOT_ENOUGH", "批次预算不足")
            day_key = f"{stock_id}:{now.date().isoformat()}"
            day = self.store.get(DAY_AMOUNTS, day_key) or {"amount": 0}
            if (
                stock["max_amount_by_day"] is not None
                and day["amount"] + stock["coupon_amount"] > stock["max_amount_by_day"]
            ):
                raise WxError(403, "NOT_ENOUGH", "批次单天预算不足")
            user_key = f"{stock_id}:{openid}"
            user = self.store.get(USER_COUNTS, user_key) or {"count": 0}
            if user["count"] >= stock["max_coupons_per_user"]:
                raise WxError(403, "RULE_LIMIT", "用户已达最大领券次数")
            coupon = {
                "coupon_id": _digits(11),
                "stock_id": stock_id,
                "stock_creator_mchid": stock["stock_creator_mchid"],
                "openid": openid,
                "appid": appid,
                "sender_mchid": sender,
                "status": "SENDED",
                "create_time": rfc3339(now),
                "consume_information": None,
            }
            self.store.put(COUPONS, coupon["coupon_id"], coupon)
            self.store.put(USER_COUNTS, user_key, {"count": user["count"] + 1})
            self.store.put(DAY_AMOUNTS, day_key, {"amount": day["amount"] + stock["coupon_amount"]})
            self.store.put(STOCKS, stock_id, {**stock, "distributed_coupons": stock["distributed_coupons"] + 1})
            return {"coupon_id": coupon["coupon_id"]}

        fingerprint = _fingerprint({**body, "openid": openid})
        return self.store.once(SENDS, f"{sender}:{request_no}", fingerprint, send, request_number_reused)

    def _status(self, coupon: Document, stock: Document) -> str:
        if coupon["status"] == "SENDED" and now_cst() >= datetime.fromisoformat(stock["available_end_time"]):
            return "EXPIRED"
        return str(coupon["status"])

    def coupon_view(self, coupon: Document) -> dict[str, Any]:
        stock = self.store.get(STOCKS, coupon["stock_id"])
        assert stock is not None
        view: dict[str, Any] = {
            "stock_creator_mchid": stock["stock_creator_mchid"],
            "stock_id": stock["stock_id"],
            "coupon_id": coupon["coupon_id"],
            "coupon_name": stock["stock_name"],
            "status": self._status(coupon, stock),
            "description": stock["description"],
            "create_time": coupon["create_time"],
            "coupon_type": "NORMAL",
            "no_cash": stock["no_cash"],
            "available_begin_time": stock["available_begin_time"],
            "available_end_time": stock["available_end_time"],
            "singleitem": False,
            "normal_coupon_information": {
                "coupon_amount": stock["coupon_amount"],
                "transaction_minimum": stock["transaction_minimum"],
            },
        }
        if coupon.get("consume_information"):
            view["consume_information"] = coupon["consume_information"]
        return view

    def get_coupon(self, merchant: Document, openid: str, coupon_id: str, query: dict[str, str]) -> dict[str, Any]:
        if set(query) != {"appid"}:
            raise WxError(400, "PARAM_ERROR", "query must be exactly appid")
        coupon = self.store.get(COUPONS, coupon_id)
        if (
            coupon is None
            or coupon["openid"] != openid
            or merchant["mchid"] not in (coupon["stock_creator_mchid"], coupon["sender_mchid"])
        ):
            raise WxError(404, "RESOURCE_NOT_EXISTS", "代金券不存在")
        return self.coupon_view(coupon)

    def list_coupons(self, merchant: Document, openid: str, query: dict[str, str]) -> dict[str, Any]:
        allowed = {"appid", "stock_id", "status", "creator_mchid", "sender_mchid", "available_mchid", "offset", "limit"}
        if "appid" not in query or set(query) - allowed:
            raise WxError(400, "PARAM_ERROR", f"query: appid plus any of {sorted(allowed - {'appid'})}")
        # With available_mchid WeChat ignores status, offset and limit (the SDK's documentation) [L: the answer].
        by_merchant = "available_mchid" in query
        mchid = merchant["mchid"]
        found = []
        for coupon in self.store.list(COUPONS):
            if coupon["openid"] != openid or mchid not in (coupon["stock_creator_mchid"], coupon["sender_mchid"]):
                continue
            stock = self.store.get(STOCKS, coupon["stock_id"])
            assert stock is not None
            wanted = {
                "stock_id": coupon["stock_id"],
                "creator_mchid": coupon["stock_creator_mchid"],
                "sender_mchid": coupon["sender_mchid"],
                "status": self._status(coupon, stock),
            }
            if by_merchant:
                wanted.pop("status")
                if query["available_mchid"] not in stock["available_merchants"]:
                    continue
            if any(query.get(name) not in (None, value) for name, value in wanted.items()):
                continue
            found.append(self.coupon_view(coupon))
        found.sort(key=lambda v: v["create_time"])
        if by_merchant:  # every coupon usable there, in one answer
            return {"data": found, "total_count": len(found), "offset": 0, "limit": len(found)}
        return page_of(found, query, limit_default=20)

    # ------------------------------------------------------------------ use in a payment
    def promotion(self, order: Document, coupon_id: str, openid: str | None) -> list[dict[str, Any]]:
        """The `promotion_detail[]` a payment by `openid` gets when its payer picks `coupon_id`
        (raises ControlError when the coupon cannot be used for this order; nothing changes)."""
        coupon = self.store.get(COUPONS, coupon_id)
        if coupon is None:
            raise ControlError(404, f"no coupon {coupon_id}")
        stock = self.store.get(STOCKS, coupon["stock_id"])
        assert stock is not None
        status = self._status(coupon, stock)
        if status != "SENDED":
            raise ControlError(409, f"coupon is {status}")
        if openid is not None and coupon["openid"] != openid:
            raise ControlError(409, "the coupon belongs to another user")
        now = now_cst()
        if now < datetime.fromisoformat(stock["available_begin_time"]):
            raise ControlError(409, "the coupon is not usable yet")
        paid_merchant = order.get("sub_mchid") or order["mchid"]
        if paid_merchant not in stock["available_merchants"]:
            raise ControlError(409, f"the coupon is not usable at {paid_merchant}")
        if order["total"] < stock["transaction_minimum"]:
            raise ControlError(409, f"the order does not reach {stock['transaction_minimum']} fen")
        amount = stock["coupon_amount"]
        creator = stock["stock_creator_mchid"]
        wechat = amount if creator == WECHATPAY_CREATOR else 0
        own = amount if creator in (order["mchid"], order.get("sub_mchid")) else 0
        return [
            {
                "coupon_id": coupon_id,
                "name": stock["stock_name"],
                "scope": "GLOBAL",
                "type": "NOCASH" if stock["no_cash"] else "CASH",
                "amount": amount,
                "stock_id": stock["stock_id"],
                "wechatpay_contribute": wechat,
                "merchant_contribute": own,
                "other_contribute": amount - wechat - own,
                "currency": "CNY",
            }
        ]

    def use(self, order: Document) -> None:
        """The order is paid: its coupons are USED, and each stock creator with a callback URL hears
        `COUPON.USE`. A coupon already used by this very order is left as it is (a replay)."""
        for detail in order.get("promotion_detail") or []:
            information = {
                "consume_time": order["success_time"],
                "consume_mchid": order.get("sub_mchid") or order["mchid"],
                "transaction_id": order["transaction_id"],
            }

            def consume(current: Document, information: dict[str, Any] = information) -> Document:
                if current["status"] == "USED":
                    if (current.get("consume_information") or {}).get("transaction_id") != information[
                        "transaction_id"
                    ]:
                        raise ControlError(409, "coupon already used")
                    return current
                return {**current, "status": "USED", "consume_information": information}

            coupon = self.store.update(COUPONS, detail["coupon_id"], consume)
            creator = coupon["stock_creator_mchid"]
            callback = self.store.get(CALLBACKS, creator)
            merchant = self.store.get("merchants", creator)
            if callback is None or not callback["switch"] or merchant is None:
                continue
            self.sandbox._notify(
                merchant,
                url=callback["notify_url"],
                event_type="COUPON.USE",
                summary="代金券核销通知",
                original_type="coupon",
                resource=self.coupon_view(coupon),
                subject=coupon["coupon_id"],
            )

    def use_silently(self, coupon_id: str) -> dict[str, Any]:
        """Control: the coupon is used at WeChat and its `COUPON.USE` never reaches the creator (a lost callback,
        a use outside the creator's view) — what a creator's daily comparison must find."""

        def consume(current: Document) -> Document:
            stock = self.store.get(STOCKS, current["stock_id"])
            assert stock is not None
            if self._status(current, stock) != "SENDED":
                raise ControlError(409, f"coupon is {current['status']}")
            information = {
                "consume_time": rfc3339(now_cst()),
                "consume_mchid": current["stock_creator_mchid"],
                "transaction_id": "42" + _digits(26),
            }
            return {**current, "status": "USED", "consume_information": information}

        if self.store.get(COUPONS, coupon_id) is None:
            raise ControlError(404, f"no coupon {coupon_id}")
        return self.coupon_view(self.store.update(COUPONS, coupon_id, consume))

    # ------------------------------------------------------------------ callbacks
    def set_callback(self, merchant: Document, body: dict[str, Any]) -> dict[str, Any]:
        if set(body) - {"mchid", "notify_url", "switch"} or body.get("mchid") != merchant["mchid"]:
            raise WxError(400, "PARAM_ERROR", "body: {mchid (the signing mchid), notify_url, switch?}")
        url = body.get("notify_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 256:
            raise WxError(400, "PARAM_ERROR", "notify_url must be an absolute http(s) URL")
        switch = body.get("switch", True)
        if not isinstance(switch, bool):
            raise WxError(400, "PARAM_ERROR", "switch must be a boolean")
        moment = rfc3339(now_cst())
        self.store.put(CALLBACKS, merchant["mchid"], {"notify_url": url, "switch": switch, "update_time": moment})
        return {"update_time": moment, "notify_url": url}

    def get_callback(self, merchant: Document, query: dict[str, str]) -> dict[str, Any]:
        if query.get("mchid") != merchant["mchid"] or set(query) != {"mchid"}:
            raise WxError(400, "PARAM_ERROR", "query must be exactly mchid (the signing mchid)")
        callback = self.store.get(CALLBACKS, merchant["mchid"])
        if callback is None:
            raise WxError(404, "RESOURCE_NOT_EXISTS", "未设置通知地址")
        return {"mchid": merchant["mchid"], "notify_url": callback["notify_url"]}


def install_routes(app: FastAPI, sandbox: Sandbox, v3: V3Http) -> Favor:
    authenticated, json_body, wx_response = v3.authenticated, v3.json_body, v3.wx_response
    favor = Favor(sandbox)
    prefix = "/v3/marketing/favor"

    @app.post(prefix + "/coupon-stocks")
    async def create_stock(request: Request) -> Response:
        merchant, body = await authenticated(request)
        return wx_response(200, favor.create_stock(merchant, json_body(request, body)))

    @app.post(prefix + "/stocks/{stock_id}/{action}")
    async def stock_action(stock_id: str, action: str, request: Request) -> Response:
        merchant, body = await authenticated(request)
        if action not in TRANSITIONS:
            raise WxError(404, "NOT_FOUND", f"no such action {action}")
        return wx_response(200, favor.transition(merchant, stock_id, action, json_body(request, body)))

    @app.get(prefix + "/stocks")
    async def list_stocks(request: Request) -> Response:
        merchant, _ = await authenticated(request)
        return wx_response(200, favor.list_stocks(merchant, dict(request.query_params)))

    @app.get(prefix + "/stocks/{stock_id}")
    async def get_stock(stock_id: str, request: Request) -> Response:
        merchant, _ = await authenticated(request)
        return wx_response(200, favor.get_stock(merchant, stock_id, dict(request.query_params)))

    @app.post(prefix + "/users/{openid}/coupons")
    async def send_coupon(openid: str, request: Request) -> Response:
        merchant, body = await authenticated(request)
        return wx_response(200, favor.send(merchant, openid, json_body(request, body)))

    @app.get(prefix + "/users/{openid}/coupons")
    async def list_coupons(openid: str, request: Request) -> Response:
        merchant, _ = await authenticated(request)
        return wx_response(200, favor.list_coupons(merchant, openid, dict(request.query_params)))

    @app.get(prefix + "/users/{openid}/coupons/{coupon_id}")
    async def get_coupon(openid: str, coupon_id: str, request: Request) -> Response:
        merchant, _ = await authenticated(request)
        return wx_response(200, favor.get_coupon(merchant, openid, coupon_id, dict(request.query_params)))

    @app.post(prefix + "/callbacks")
    async def set_callback(request: Request) -> Response:
        merchant, body = await authenticated(request)
        return wx_response(200, favor.set_callback(merchant, json_body(request, body)))

    @app.get(prefix + "/callbacks")
    async def get_callback(request: Request) -> Response:
        merchant, _ = await authenticated(request)
        return wx_response(200, favor.get_callback(merchant, dict(request.query_params)))

    @app.post("/control/favor/stocks")
    async def create_wechat_stock(request: WechatStockRequest) -> dict[str, Any]:
        """A stock WeChat runs and funds itself (its coupons pay `wechatpay_contribute`)."""
        return favor.create_wechat_stock(request)

    @app.post("/control/favor/coupons/{coupon_id}/use")
    async def use_coupon_silently(coupon_id: str) -> dict[str, Any]:
        """A use whose COUPON.USE is lost (for the creator's daily comparison)."""
        return favor.use_silently(coupon_id)

    @app.post("/control/favor/stocks/{stock_id}/send")
    async def send_wechat_coupon(stock_id: str, request: WechatSendRequest) -> dict[str, Any]:
        return favor.send_as_wechat(stock_id, request)

    return favor
