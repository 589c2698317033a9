"""微信支付商家券 (WeChat Pay v3 merchant coupons, "busifavor"; docs/protocols/wechatpay.md §14).

Why: a merchant's own coupon programme run at WeChat — users claim its coupons inside WeChat (the sandbox's
control API plays the claim), the merchant hears `COUPON.SEND` and redeems them itself (核销) at its till or
online with `coupons/use`. Unlike 代金券 no money moves at WeChat: the merchant simply takes less (the
discount is merchant-funded, contra-revenue for Juhe). The public `wechatpayv3` SDK's `marketing_busifavor_*`
calls work against it unmodified (tests/test_sdk_conformance.py).

Facts relied on [H: pay.weixin.qq.com 商家券 pages, wechatpayv3 `marketing.py`; L where marked]:
- `POST /v3/marketing/busifavor/stocks` {stock_name, belong_merchant, goods_name, stock_type: NORMAL,
  coupon_use_rule{coupon_available_time{available_begin_time, available_end_time},
  fixed_normal_coupon{discount_amount, transaction_minimum}, use_method}, stock_send_rule{max_coupons,
  max_coupons_per_user}, out_request_no, coupon_code_mode: WECHATPAY_MODE, subsidy?, comment?, …} →
  {stock_id, create_time}; the stock runs at once (status `RUNNING`) [L]; `out_request_no` replays.
- `GET …/stocks/{stock_id}` the stock with `send_count_information{total_send_num, total_send_amount}`.
- `POST …/coupons/use` {coupon_code, stock_id, appid, use_time, use_request_no, openid?} → {stock_id, openid,
  wechatpay_use_time}; idempotent by `use_request_no`; a coupon not SENDED → 400 `INVALID_REQUEST` [L: code].
  A coupon still SENDED at its stock's `available_end_time` is `EXPIRED` (the SDK's coupon_state values).
- `POST …/coupons/return` {coupon_code, stock_id, return_request_no} (退券: USED → SENDED) and
  `…/coupons/deactivate` {coupon_code, stock_id, deactivate_request_no, deactivate_reason?} (→ DEACTIVATED).
- `GET …/users/{openid}/coupons?appid=&stock_id=&coupon_state=`, `GET …/users/{openid}/coupons/{code}/appids/{appid}`.
- `POST|GET …/callbacks` {mchid, notify_url}: `COUPON.SEND` (a user claimed a coupon) goes there, AES-256-GCM,
  `original_type: busifavor`, resource `{event_type, coupon_code, stock_id, send_time, openid, unionid?,
  send_channel, send_merchant, attach_info}` [L: resource fields]; the real one is retried 11 × every 60 s, the
  sandbox uses the common WeChat schedule.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from sandboxes.common.store import Document
from sandboxes.wechatpay.favor import REQUEST_NO, _fen, _fingerprint, _time, page_of, request_number_reused
from sandboxes.wechatpay.sandbox import ControlError, Sandbox, WxError, _digits, now_cst, rfc3339

if TYPE_CHECKING:  # app.py builds the object and imports this module
    from sandboxes.wechatpay.app import V3Http

STOCKS, COUPONS, REQUESTS, CALLBACKS = "busifavor_stocks", "busifavor_coupons", "busifavor_requests", "busifavor_cb"
STOCK_FIELDS = frozenset(
    {
        "stock_name",
        "belong_merchant",
        "comment",
        "goods_name",
        "stock_type",
        "coupon_use_rule",
        "stock_send_rule",
        "out_request_no",
        "custom_entrance",
        "display_pattern_info",
        "coupon_code_mode",
        "notify_config",
        "subsidy",
    }
)
USE_METHODS = frozenset({"OFF_LINE", "MINI_PROGRAMS", "SELF_CONSUME", "PAYMENT_CODE"})


class ClaimRequest(BaseModel):
    """A user claims one of the stock's coupons inside WeChat (发券插件 / H5 发券)."""

    model_config = ConfigDict(extra="forbid")

    openid: str = Field(min_length=1, max_length=128)
    appid: str = Field(min_length=1, max_length=128)


class Busifavor:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.store = sandbox.store

    def _once(self, key: str, body: dict[str, Any], act: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Idempotency by a request number: the same body replays the first answer; another is refused."""
        return self.store.once(REQUESTS, key, _fingerprint(body), act, request_number_reused)

    def create_stock(self, merchant: Document, body: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(body) - STOCK_FIELDS)
        if unknown:
            raise WxError(400, "PARAM_ERROR", f"unknown fields: {', '.join(unknown)}")
        for name in ("stock_name", "goods_name", "out_request_no"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise WxError(400, "PARAM_ERROR", f"{name} is required")
        if not REQUEST_NO.fullmatch(body["out_request_no"]):
            raise WxError(400, "PARAM_ERROR", "out_request_no: 1-128 chars of [0-9A-Za-z_-|*]")
        if body.get("belong_merchant") != merchant["mchid"]:
            raise WxError(400, "PARAM_ERROR", "belong_merchant must be the creating mchid")
        if body.get("stock_type") != "NORMAL" or body.get("coupon_code_mode") != "WECHATPAY_MODE":
            raise WxError(400, "PARAM_ERROR", "stock_type NORMAL and coupon_code_mode WECHATPAY_MODE are supported")
        rule, send = body.get("coupon_use_rule"), body.get("stock_send_rule")
        if not isinstance(rule, dict) or not isinstance(send, dict):
            raise WxError(400, "PARAM_ERROR", "coupon_use_rule and stock_send_rule are required objects")
        window = rule.get("coupon_available_time")
        fixed = rule.get("fixed_normal_coupon")
        if not isinstance(window, dict) or not isinstance(fixed, dict) or rule.get("use_method") not in USE_METHODS:
            raise WxError(400, "PARAM_ERROR", "coupon_available_time, fixed_normal_coupon and use_method are required")
        begin, end = _time(window, "available_begin_time"), _time(window, "available_end_time")
        if not begin < end <= begin + timedelta(days=365):
            raise WxError(400, "PARAM_ERROR", "the available window must end after it begins, within a year")
        amount = _fen(fixed, "discount_amount", "fixed_normal_coupon")
        minimum = _fen(fixed, "transaction_minimum", "fixed_normal_coupon")
        max_coupons = _fen(send, "max_coupons", "stock_send_rule")
        per_user = _fen(send, "max_coupons_per_user", "stock_send_rule")
        assert amount is not None and minimum is not None and max_coupons is not None and per_user is not None
        if minimum <= amount:
            raise WxError(400, "PARAM_ERROR", "transaction_minimum must exceed discount_amount")

        def create() -> dict[str, Any]:
            stock = {
                "stock_id": "1212" + _digits(12),
                "belong_merchant": merchant["mchid"],
                "stock_name": body["stock_name"],
                "goods_name": body["goods_name"],
                "status": "RUNNING",
                "create_time": rfc3339(now_cst()),
                "available_begin_time": rfc3339(begin),
                "available_end_time": rfc3339(end),
                "discount_amount": amount,
                "transaction_minimum": minimum,
                "use_method": rule["use_method"],
                "max_coupons": max_coupons,
                "max_coupons_per_user": per_user,
                "send_count": 0,
            }
            self.store.put(STOCKS, stock["stock_id"], stock)
            return {"stock_id": stock["stock_id"], "create_time": stock["create_time"]}

        return self._once(f"stock:{merchant['mchid']}:{body['out_request_no']}", body, create)

    def _stock(self, merchant: Document, stock_id: str) -> Document:
        stock = self.store.get(STOCKS, stock_id)
        if stock is None or stock["belong_merchant"] != merchant["mchid"]:
            raise WxError(404, "RESOURCE_NOT_EXISTS", "批次不存在")
        return stock

    def stock_view(self, merchant: Document, stock_id: str) -> dict[str, Any]:
        stock = self._stock(merchant, stock_id)
        return {
            "stock_id": stock["stock_id"],
            "stock_name": stock["stock_name"],
            "belong_merchant": stock["belong_merchant"],
            "goods_name": stock["goods_name"],
            "stock_type": "NORMAL",
            "stock_state": stock["status"],
            "coupon_code_mode": "WECHATPAY_MODE",
            "coupon_use_rule": {
                "coupon_available_time": {
                    "available_begin_time": stock["available_begin_time"],
                    "available_end_time": stock["available_end_time"],
                },
                "fixed_normal_coupon": {
                    "discount_amount": stock["discount_amount"],
                    "transaction_minimum": stock["transaction_minimum"],
                },
                "use_method": stock["use_method"],
            },
            "stock_send_rule": {
                "max_coupons": stock["max_coupons"],
                "max_coupons_per_user": stock["max_coupons_per_user"],
            },
            "send_count_information": {
                "total_send_num": stock["send_count"],
                "total_send_amount": stock["send_count"] * stock["discount_amount"],
            },
        }

    def _state(self, coupon: Document) -> str:
        """The coupon's state as WeChat shows it: a SENDED coupon past its stock's window is EXPIRED."""
        stock = self.store.get(STOCKS, coupon["stock_id"]) or {}
        end = stock.get("available_end_time")
        if coupon["state"] == "SENDED" and end is not None and now_cst() >= datetime.fromisoformat(end):
            return "EXPIRED"
        return str(coupon["state"])

    def claim(self, stock_id: str, request: ClaimRequest) -> dict[str, Any]:
        """A user claims a coupon in WeChat: inside the stock's window and limits; `COUPON.SEND` follows."""
        with self.store.transaction():
            stock = self.store.get(STOCKS, stock_id)
            if stock is None:
                raise ControlError(404, f"no 商家券 stock {stock_id}")
            begin, end = (
                datetime.fromisoformat(stock[name]) for name in ("available_begin_time", "available_end_time")
            )
            if not begin <= now_cst() < end:
                raise ControlError(409, "the stock is not in its available window")
            if stock["send_count"] >= stock["max_coupons"]:
                raise ControlError(409, "the stock is used up")
            held = [c for c in self.store.list(COUPONS) if c["stock_id"] == stock_id and c["openid"] == request.openid]
            if len(held) >= stock["max_coupons_per_user"]:
                raise ControlError(409, "the user holds as many as allowed")
            coupon = {
                "coupon_code": f"{secrets.randbelow(10**18):018d}",
                "stock_id": stock_id,
                "belong_merchant": stock["belong_merchant"],
                "openid": request.openid,
                "appid": request.appid,
                "state": "SENDED",
                "send_time": rfc3339(now_cst()),
                "use_time": None,
            }
            self.store.put(COUPONS, coupon["coupon_code"], coupon)
            self.store.put(STOCKS, stock_id, {**stock, "send_count": stock["send_count"] + 1})
        callback = self.store.get(CALLBACKS, stock["belong_merchant"])
        merchant = self.store.get("merchants", stock["belong_merchant"])
        if callback is not None and merchant is not None:
            self.sandbox._notify(
                merchant,
                url=callback["notify_url"],
                event_type="COUPON.SEND",
                summary="商家券领券通知",
                original_type="busifavor",
                resource={
                    "event_type": "EVENT_TYPE_BUSICOUPON_SEND",
                    "coupon_code": coupon["coupon_code"],
                    "stock_id": stock_id,
                    "send_time": coupon["send_time"],
                    "openid": request.openid,
                    "send_channel": "BUSICOUPON_SEND_CHANNEL_MINIAPP",
                    "send_merchant": stock["belong_merchant"],
                    "attach_info": {"transaction_id": "", "act_code": ""},
                },
                subject=coupon["coupon_code"],
            )
        return {"coupon_code": coupon["coupon_code"], "stock_id": stock_id}

    def _coupon(self, merchant: Document, body: dict[str, Any]) -> Document:
        coupon = self.store.get(COUPONS, str(body.get("coupon_code") or ""))
        if coupon is None or coupon["belong_merchant"] != merchant["mchid"]:
            raise WxError(404, "RESOURCE_NOT_EXISTS", "券不存在")
        if body.get("stock_id") not in (None, coupon["stock_id"]):
            raise WxError(400, "PARAM_ERROR", "stock_id does not match the coupon")
        return coupon

    def _move(
        self,
        merchant: Document,
        body: dict[str, Any],
        *,
        number: str,
        fields: frozenset[str],
        source: str,
        target: str,
        answer_time: str,
    ) -> dict[str, Any]:
        """use / return / deactivate: one state change of a coupon, idempotent by its request number."""
        if set(body) - fields or not isinstance(body.get(number), str) or not body[number]:
            raise WxError(400, "PARAM_ERROR", f"body: {sorted(fields)} with {number}")
        coupon = self._coupon(merchant, body)

        def change() -> dict[str, Any]:
            current = self.store.get(COUPONS, coupon["coupon_code"]) or coupon
            state = self._state(current)
            if state != source:
                raise WxError(400, "INVALID_REQUEST", f"券状态不允许此操作 (coupon is {state})")
            moment = rfc3339(now_cst())
            used_at = moment if target == "USED" else None
            self.store.put(COUPONS, coupon["coupon_code"], {**current, "state": target, "use_time": used_at})
            return {"stock_id": coupon["stock_id"], "openid": coupon["openid"], answer_time: moment}

        return self._once(f"{number}:{merchant['mchid']}:{body[number]}", body, change)

    def use(self, merchant: Document, body: dict[str, Any]) -> dict[str, Any]:
        fields = frozenset({"coupon_code", "stock_id", "appid", "use_time", "use_request_no", "openid"})
        return self._move(
            merchant,
            body,
            number="use_request_no",
            fields=fields,
            source="SENDED",
            target="USED",
            answer_time="wechatpay_use_time",
        )

    def give_back(self, merchant: Document, body: dict[str, Any]) -> dict[str, Any]:
        fields = frozenset({"coupon_code", "stock_id", "return_request_no"})
        return self._move(
            merchant,
            body,
            number="return_request_no",
            fields=fields,
            source="USED",
            target="SENDED",
            answer_time="wechatpay_return_time",
        )

    def deactivate(self, merchant: Document, body: dict[str, Any]) -> dict[str, Any]:
        fields = frozenset({"coupon_code", "stock_id", "deactivate_request_no", "deactivate_reason"})
        return self._move(
            merchant,
            body,
            number="deactivate_request_no",
            fields=fields,
            source="SENDED",
            target="DEACTIVATED",
            answer_time="wechatpay_deactivate_time",
        )

    def coupon_view(self, coupon: Document) -> dict[str, Any]:
        stock = self.store.get(STOCKS, coupon["stock_id"]) or {}
        view = {
            "belong_merchant": coupon["belong_merchant"],
            "stock_name": stock.get("stock_name"),
            "stock_id": coupon["stock_id"],
            "coupon_code": coupon["coupon_code"],
            "coupon_state": self._state(coupon),
            "stock_type": "NORMAL",
            "receive_time": coupon["send_time"],
            "available_start_time": stock.get("available_begin_time"),
            "expire_time": stock.get("available_end_time"),
            "coupon_use_rule": {
                "fixed_normal_coupon": {
                    "discount_amount": stock.get("discount_amount"),
                    "transaction_minimum": stock.get("transaction_minimum"),
                },
                "use_method": stock.get("use_method"),
            },
        }
        if coupon.get("use_time"):
            view["use_request_time"] = coupon["use_time"]
        return view

    def user_coupons(self, merchant: Document, openid: str, query: dict[str, str]) -> dict[str, Any]:
        if "appid" not in query:
            raise WxError(400, "PARAM_ERROR", "appid is required")
        found = [
            self.coupon_view(c)
            for c in self.store.list(COUPONS)
            if c["openid"] == openid
            and c["belong_merchant"] == merchant["mchid"]
            and query.get("stock_id") in (None, c["stock_id"])
            and query.get("coupon_state") in (None, self._state(c))
        ]
        return page_of(found, query, limit_default=20)

    def user_coupon(self, merchant: Document, openid: str, code: str) -> dict[str, Any]:
        coupon = self.store.get(COUPONS, code)
        if coupon is None or coupon["openid"] != openid or coupon["belong_merchant"] != merchant["mchid"]:
            raise WxError(404, "RESOURCE_NOT_EXISTS", "券不存在")
        return self.coupon_view(coupon)

    def set_callback(self, merchant: Document, body: dict[str, Any]) -> dict[str, Any]:
        url = body.get("notify_url")
        if body.get("mchid", merchant["mchid"]) != merchant["mchid"] or not isinstance(url, str):
            raise WxError(400, "PARAM_ERROR", "body: {mchid (the signing mchid), notify_url}")
        if not url.startswith(("http://", "https://")):
            raise WxError(400, "PARAM_ERROR", "notify_url must be an absolute http(s) URL")
        moment = rfc3339(now_cst())
        self.store.put(CALLBACKS, merchant["mchid"], {"notify_url": url, "update_time": moment})
        return {"update_time": moment, "notify_url": url, "mchid": merchant["mchid"]}

    def get_callback(self, merchant: Document) -> dict[str, Any]:
        callback = self.store.get(CALLBACKS, merchant["mchid"])
        if callback is None:
            raise WxError(404, "RESOURCE_NOT_EXISTS", "未设置通知地址")
        return {"notify_url": callback["notify_url"], "mchid": merchant["mchid"]}


def install_routes(app: FastAPI, sandbox: Sandbox, v3: V3Http) -> Busifavor:
    authenticated, json_body, wx_response = v3.authenticated, v3.json_body, v3.wx_response
    busifavor = Busifavor(sandbox)
    prefix = "/v3/marketing/busifavor"

    @app.post(prefix + "/stocks")
    async def create_stock(request: Request) -> Response:
        merchant, body = await authenticated(request)
        return wx_response(200, busifavor.create_stock(merchant, json_body(request, body)))

    @app.get(prefix + "/stocks/{stock_id}")
    async def get_stock(stock_id: str, request: Request) -> Response:
        merchant, _ = await authenticated(request)
        return wx_response(200, busifavor.stock_view(merchant, stock_id))

    @app.post(prefix + "/coupons/{action}")
    async def coupon_action(action: str, request: Request) -> Response:
        merchant, body = await authenticated(request)
        actions = {"use": busifavor.use, "return": busifavor.give_back, "deactivate": busifavor.deactivate}
        if action not in actions:
            raise WxError(404, "NOT_FOUND", f"no such action {action}")
        return wx_response(200, actions[action](merchant, json_body(request, body)))

    @app.get(prefix + "/users/{openid}/coupons")
    async def user_coupons(openid: str, request: Request) -> Response:
        merchant, _ = await authenticated(request)
        return wx_response(200, busifavor.user_coupons(merchant, openid, dict(request.query_params)))

    @app.get(prefix + "/users/{openid}/coupons/{coupon_code}/appids/{appid}")
    async def user_coupon(openid: str, coupon_code: str, appid: str, request: Request) -> Response:
        merchant, _ = await authenticated(request)
        return wx_response(200, busifavor.user_coupon(merchant, openid, coupon_code))

    @app.post(prefix + "/callbacks")
    async def set_callback(request: Request) -> Response:
        merchant, body = await authenticated(request)
        return wx_response(200, busifavor.set_callback(merchant, json_body(request, body)))

    @app.get(prefix + "/callbacks")
    async def get_callback(request: Request) -> Response:
        merchant, _ = await authenticated(request)
        return wx_response(200, busifavor.get_callback(merchant))

    @app.post("/control/busifavor/stocks/{stock_id}/claims")
    async def claim(stock_id: str, request: ClaimRequest) -> dict[str, Any]:
        """A user claims one coupon in WeChat (the merchant then hears COUPON.SEND)."""
        return busifavor.claim(stock_id, request)

    return busifavor
