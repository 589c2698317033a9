"""合单支付 (combined payment): one payer, one password, several merchants' orders paid at once.

`POST /v3/combine-transactions/{native|jsapi|app|h5}` creates a combined order
(`combine_appid`, `combine_mchid`, `combine_out_trade_no`, `sub_orders[]`, `notify_url`, optional
`scene_info`, `combine_payer_info` (JSAPI: required), `time_start`, `time_expire`) and answers one
prepay (`code_url` / `prepay_id` / `h5_url`) for all of it. Each sub-order (`mchid`, `attach`,
`amount{total_amount, currency}`, `out_trade_no`, `description`, optional `settle_info{profit_sharing,
subsidy_amount}`, `goods_tag`, `detail`; `sub_mchid` in the service-provider variant) becomes an
ordinary order of its merchant, marked with its combined order: the ordinary order queries, refunds
(per sub-order `out_trade_no`), profit sharing and trade / fund-flow bills see it like any order.
Only the combined API closes it, and only the combined order is paid (the sandbox payer:
`POST /control/combine-orders/{combine_out_trade_no}/approve`): every sub-order turns SUCCESS at the same
moment, each with its own transaction_id, and one `TRANSACTION.SUCCESS` callback carries the combined
order (`combine_out_trade_no`, `sub_orders[]`, `combine_payer_info`) to the combined `notify_url`.

States: each sub-order `NOTPAY → SUCCESS | PAYERROR | CLOSED` (combined close, or `time_expire`
passed), `SUCCESS → REFUND` once one of its refunds succeeded — the ordinary order's machine.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from sandboxes.common.store import Document
from sandboxes.wechatpay import crypto
from sandboxes.wechatpay.sandbox import (
    OUT_TRADE_NO_PATTERN,
    TRADE_TYPES,
    ControlError,
    Sandbox,
    WxError,
    _check_currency,
    _check_notify_url,
    _digits,
    _optional_str,
    _require_int,
    _require_str,
    check_h5_scene,
    now_cst,
    optional_time,
    rfc3339,
)

if TYPE_CHECKING:  # app.py builds the object and imports this module
    from sandboxes.wechatpay.app import V3Http

COMBINES = "combine_orders"
FIELDS = frozenset(
    {
        "combine_appid",
        "combine_mchid",
        "combine_out_trade_no",
        "scene_info",
        "sub_orders",
        "combine_payer_info",
        "time_start",
        "time_expire",
        "notify_url",
    }
)
SUB_FIELDS = frozenset(
    {"mchid", "attach", "amount", "out_trade_no", "description", "settle_info", "goods_tag", "detail", "sub_mchid"}
)
CLOSE_FIELDS = frozenset({"combine_appid", "sub_orders"})
SUB_ORDERS_MIN, SUB_ORDERS_MAX = 2, 10  # the merchant docs' 2–10 sub-orders per combined order
COMBINE_OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_\-|*]{6,32}")
PAID = ("SUCCESS", "REFUND")


def _fields(body: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise WxError(400, "PARAM_ERROR", f"unknown fields in {where}: {', '.join(unknown)}")


class Combines:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.store = sandbox.store

    # ------------------------------------------------------------------ create
    def create(self, merchant: Document, kind: str, body: dict[str, Any], *, base_url: str) -> dict[str, Any]:
        if kind not in TRADE_TYPES:
            raise WxError(404, "NOT_FOUND", f"no such trade type {kind}")
        _fields(body, FIELDS, "the combined order")
        combine_appid = _require_str(body, "combine_appid", max_length=32)
        if _require_str(body, "combine_mchid", max_length=32) != merchant["mchid"]:
            raise WxError(400, "INVALID_REQUEST", "combine_mchid does not match the signing mchid")
        if combine_appid not in merchant["appids"]:
            raise WxError(400, "APPID_MCHID_NOT_MATCH", "combine_appid is not bound to combine_mchid")
        combine_no = _require_str(body, "combine_out_trade_no", max_length=32)
        if not COMBINE_OUT_TRADE_NO.fullmatch(combine_no):
            raise WxError(400, "PARAM_ERROR", "combine_out_trade_no must be 6-32 chars of [0-9A-Za-z_-|*]")
        notify_url = _check_notify_url(body.get("notify_url"))
        time_start, time_expire = optional_time(body, "time_start"), optional_time(body, "time_expire")
        if time_start and time_expire and time_expire <= time_start:
            raise WxError(400, "PARAM_ERROR", "time_expire must be after time_start")
        scene = body.get("scene_info")
        if scene is not None and not (isinstance(scene, dict) and scene.get("payer_client_ip")):
            raise WxError(400, "PARAM_ERROR", "scene_info.payer_client_ip is required")
        if kind == "h5":
            check_h5_scene(scene)
        payer = body.get("combine_payer_info")
        if payer is not None and not (
            isinstance(payer, dict) and isinstance(payer.get("openid"), str) and payer["openid"]
        ):
            raise WxError(400, "PARAM_ERROR", "combine_payer_info.openid must be a non-empty string")
        if kind == "jsapi" and payer is None:
            raise WxError(400, "PARAM_ERROR", "combine_payer_info.openid is required for JSAPI")
        subs = self._sub_orders(merchant, combine_appid, body.get("sub_orders"))

        fingerprint = hashlib.sha256(
            json.dumps({"kind": kind, **body}, sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest()
        key = f"{merchant['mchid']}:{combine_no}"
        combine: Document = {
            "key": key,
            "kind": kind,
            "combine_appid": combine_appid,
            "combine_mchid": merchant["mchid"],
            "combine_out_trade_no": combine_no,
            "device_id": (scene or {}).get("device_id"),
            "payer_openid": (payer or {}).get("openid"),
            "notify_url": notify_url,
            "time_start": rfc3339(time_start) if time_start else None,
            "time_expire": rfc3339(time_expire) if time_expire else None,
            "prepay_id": "wx" + now_cst().strftime("%d%H%M%S") + _digits(26),
            "code_token": secrets.token_urlsafe(12),
            "fingerprint": fingerprint,
            "sub_order_keys": [sub["key"] for sub in subs],
            "create_time": rfc3339(now_cst()),
        }
        with self.store.transaction():
            if self.store.insert_if_absent(COMBINES, key, combine):
                for sub in subs:
                    order = {
                        **sub,
                        "trade_type": TRADE_TYPES[kind],
                        "kind": kind,
                        "notify_url": notify_url,
                        "time_expire": combine["time_expire"],
                        "payer_openid": combine["payer_openid"],
                        "prepay_id": combine["prepay_id"],
                        "code_token": combine["code_token"],
                        "fingerprint": f"combine:{fingerprint}",
                        "combine_key": key,
                    }
                    if not self.store.insert_if_absent("orders", sub["key"], order):  # rolls the whole order back
                        raise WxError(
                            403, "OUT_TRADE_NO_USED", f"sub-order out_trade_no {sub['out_trade_no']} is already used"
                        )
            else:
                combine = self._load(key)
                if combine["fingerprint"] != fingerprint:
                    raise WxError(
                        403, "OUT_TRADE_NO_USED", "combine_out_trade_no already used with different parameters"
                    )
                states = {order["trade_state"] for order in self.sub_orders(combine)}
                if states & set(PAID):
                    raise WxError(400, "ORDERPAID", "combined order already paid")
                if "CLOSED" in states:
                    raise WxError(400, "ORDER_CLOSED", "combined order closed")
        if kind == "native":
            return {"code_url": f"weixin://wxpay/bizpayurl?pr={combine['code_token']}"}
        if kind == "h5":
            return {
                "h5_url": f"{base_url}/control/combine-orders/{combine_no}?mchid={merchant['mchid']}"
                f"&prepay_id={combine['prepay_id']}"
            }
        return {"prepay_id": combine["prepay_id"]}

    def _sub_orders(self, merchant: Document, combine_appid: str, raw: Any) -> list[Document]:
        """Each sub-order checked and shaped as an ordinary order of its merchant (without the combined
        order's common fields)."""
        if not isinstance(raw, list) or not SUB_ORDERS_MIN <= len(raw) <= SUB_ORDERS_MAX:
            raise WxError(400, "PARAM_ERROR", f"sub_orders must list {SUB_ORDERS_MIN}-{SUB_ORDERS_MAX} sub-orders")
        subs: list[Document] = []
        for index, sub in enumerate(raw):
            where = f"sub_orders[{index}]"
            if not isinstance(sub, dict):
                raise WxError(400, "PARAM_ERROR", f"{where} must be an object")
            _fields(sub, SUB_FIELDS, where)
            mchid = _require_str(sub, "mchid", max_length=32)
            sub_mchid = _optional_str(sub, "sub_mchid", max_length=32)
            if sub_mchid is not None:  # the service provider's variant: the provider's mchid, its sub-merchant
                if mchid != merchant["mchid"]:
                    raise WxError(400, "INVALID_REQUEST", f"{where}.mchid must be the service provider's")
                scope = self.sandbox._scope(merchant, partner=True, sub_mchid=sub_mchid)
            else:
                owner = merchant if mchid == merchant["mchid"] else self.store.get("merchants", mchid)
                if owner is None:
                    raise WxError(400, "INVALID_REQUEST", f"{where}.mchid {mchid} is not a merchant")
                if combine_appid not in owner["appids"]:
                    raise WxError(400, "APPID_MCHID_NOT_MATCH", f"combine_appid is not bound to {where}.mchid")
                scope = mchid
            attach = _require_str(sub, "attach", max_length=128)
            description = _require_str(sub, "description", max_length=127)
            out_trade_no = _require_str(sub, "out_trade_no", max_length=32)
            if not OUT_TRADE_NO_PATTERN.fullmatch(out_trade_no):
                raise WxError(400, "PARAM_ERROR", f"{where}.out_trade_no must be 6-32 chars of [0-9A-Za-z_-|*]")
            amount = sub.get("amount")
            if not isinstance(amount, dict) or set(amount) - {"total_amount", "currency"}:
                raise WxError(400, "PARAM_ERROR", f"{where}.amount must be {{total_amount, currency}}")
            total = _require_int(amount, "total_amount", f"{where}.amount")
            _check_currency(amount, f"{where}.amount")
            settle = sub.get("settle_info") or {}
            if not isinstance(settle, dict) or set(settle) - {"profit_sharing", "subsidy_amount"}:
                raise WxError(400, "PARAM_ERROR", f"{where}.settle_info must be {{profit_sharing, subsidy_amount}}")
            subsidy = settle.get("subsidy_amount", 0)
            if not isinstance(subsidy, int) or isinstance(subsidy, bool) or not 0 <= subsidy <= total:
                raise WxError(400, "PARAM_ERROR", f"{where}.settle_info.subsidy_amount must be 0..total_amount fen")
            key = f"{scope}:{out_trade_no}"
            if any(s["key"] == key for s in subs):
                raise WxError(400, "PARAM_ERROR", f"{where}.out_trade_no repeats another sub-order's")
            subs.append(
                {
                    "key": key,
                    "scope": scope,
                    "partner": sub_mchid is not None,
                    "mchid": mchid,
                    "appid": combine_appid,
                    "sub_mchid": sub_mchid,
                    "sub_appid": None,
                    "out_trade_no": out_trade_no,
                    "description": description,
                    "attach": attach,
                    "total": total,
                    "currency": "CNY",
                    "payer_is_sub": False,
                    "trade_state": "NOTPAY",
                    "transaction_id": None,
                    "success_time": None,
                    "bank_type": None,
                    "create_time": rfc3339(now_cst()),
                    "goods_tag": sub.get("goods_tag"),
                    "profit_sharing": bool(settle.get("profit_sharing")),
                    "subsidy_amount": subsidy,
                }
            )
        return subs

    # ------------------------------------------------------------------ read
    def _load(self, key: str) -> Document:
        combine = self.store.get(COMBINES, key)
        if combine is None:
            raise WxError(404, self.sandbox.settings.order_not_exist_code, "combined order does not exist")
        return combine

    def sub_orders(self, combine: Document) -> list[Document]:
        """The sub-orders now (an expired `time_expire` closes them, as for any order)."""
        return [self.sandbox._load_order(key) for key in combine["sub_order_keys"]]

    def view(self, combine: Document) -> dict[str, Any]:
        """The combined order as the query and the callback give it."""
        subs = []
        for order in self.sub_orders(combine):
            sub: dict[str, Any] = {
                "mchid": order["mchid"],
                "trade_type": order["trade_type"],
                "trade_state": order["trade_state"],
                "attach": order["attach"],
                "out_trade_no": order["out_trade_no"],
            }
            if order.get("sub_mchid"):
                sub["sub_mchid"] = order["sub_mchid"]
            paid = bool(order.get("transaction_id"))
            if paid:
                sub.update(
                    bank_type=order["bank_type"],
                    success_time=order["success_time"],
                    transaction_id=order["transaction_id"],
                )
            sub["amount"] = {
                "total_amount": order["total"],
                "currency": "CNY",
                "payer_amount": order["total"] if paid else 0,
                "payer_currency": "CNY",
            }
            subs.append(sub)
        view: dict[str, Any] = {
            "combine_appid": combine["combine_appid"],
            "combine_mchid": combine["combine_mchid"],
            "combine_out_trade_no": combine["combine_out_trade_no"],
        }
        if combine.get("device_id"):
            view["scene_info"] = {"device_id": combine["device_id"]}
        view["sub_orders"] = subs
        if combine.get("payer_openid"):
            view["combine_payer_info"] = {"openid": combine["payer_openid"]}
        return view

    def query(self, merchant: Document, combine_no: str) -> dict[str, Any]:
        return self.view(self._load(f"{merchant['mchid']}:{combine_no}"))

    # ------------------------------------------------------------------ close
    def close(self, merchant: Document, combine_no: str, body: dict[str, Any]) -> None:
        """Closes every sub-order of the combined order; the request must name exactly those."""
        _fields(body, CLOSE_FIELDS, "the close request")
        combine_appid = _require_str(body, "combine_appid", max_length=32)
        combine = self._load(f"{merchant['mchid']}:{combine_no}")
        if combine_appid != combine["combine_appid"]:
            raise WxError(400, "INVALID_REQUEST", "combine_appid is not the combined order's")
        listed = body.get("sub_orders")
        if not isinstance(listed, list) or not listed or not all(isinstance(s, dict) for s in listed):
            raise WxError(400, "PARAM_ERROR", "sub_orders must list the combined order's sub-orders")
        named = set()
        for index, sub in enumerate(listed):
            _fields(sub, frozenset({"mchid", "out_trade_no", "sub_mchid", "sub_appid"}), f"sub_orders[{index}]")
            mchid, out_trade_no = _require_str(sub, "mchid"), _require_str(sub, "out_trade_no")
            scope = f"{mchid}/{sub['sub_mchid']}" if sub.get("sub_mchid") else mchid
            named.add(f"{scope}:{out_trade_no}")
        if named != set(combine["sub_order_keys"]) or len(named) != len(listed):
            raise WxError(400, "PARAM_ERROR", "sub_orders must name each sub-order of the combined order once")

        def close(order: Document) -> Document:
            return {**order, "trade_state": "CLOSED"} if order["trade_state"] in ("NOTPAY", "PAYERROR") else order

        with self.store.transaction():
            orders = self.sub_orders(combine)
            if any(order["trade_state"] in PAID for order in orders):
                raise WxError(400, "ORDERPAID", "combined order already paid, cannot close")
            for order in orders:
                self.store.update("orders", order["key"], close)

    # ------------------------------------------------------------------ control: the payer
    def find_for_control(self, combine_no: str, mchid: str | None) -> Document:
        matches = [
            c
            for c in self.store.list(COMBINES)
            if c["combine_out_trade_no"] == combine_no and (mchid is None or c["combine_mchid"] == mchid)
        ]
        if not matches:
            raise ControlError(404, f"no combined order {combine_no}")
        if len(matches) > 1:
            raise ControlError(409, f"{combine_no} exists for several merchants; pass ?mchid=<combine_mchid>")
        return matches[0]

    def approve(
        self, combine_no: str, mchid: str | None, payer_openid: str | None, bank_type: str | None
    ) -> dict[str, Any]:
        """The payer pays the combined order with one password: every sub-order succeeds at once, then one
        `TRANSACTION.SUCCESS` callback carries the combined order."""
        combine = self.find_for_control(combine_no, mchid)
        openid = combine.get("payer_openid") or payer_openid or "o" + crypto.nonce_str(27)
        moment = rfc3339(now_cst())
        with self.store.transaction():
            orders = self.sub_orders(combine)
            states = {order["trade_state"] for order in orders}
            if states != {"NOTPAY"}:
                raise ControlError(409, f"combined order is {sorted(states)}, not NOTPAY")
            for order in orders:
                transaction_id = "4200" + _digits(24)
                self.store.put(
                    "orders",
                    order["key"],
                    {
                        **order,
                        "trade_state": "SUCCESS",
                        "transaction_id": transaction_id,
                        "success_time": moment,
                        "bank_type": bank_type or "OTHERS",
                        "payer_openid": openid,
                    },
                )
                self.store.put("transactions", transaction_id, {"key": order["key"]})
            combine = {**combine, "payer_openid": openid}
            self.store.put(COMBINES, combine["key"], combine)
        view = self.view(combine)
        merchant = self.store.get("merchants", combine["combine_mchid"]) or {}
        self.sandbox._notify(
            merchant,
            url=combine["notify_url"],
            event_type="TRANSACTION.SUCCESS",
            summary="支付成功",
            original_type="transaction",
            resource=view,
            subject=combine["combine_out_trade_no"],
        )
        return view

    def decline(self, combine_no: str, mchid: str | None) -> dict[str, Any]:
        """The payment failed (no callback, as WeChat): every sub-order PAYERROR."""
        combine = self.find_for_control(combine_no, mchid)
        with self.store.transaction():
            orders = self.sub_orders(combine)
            if {order["trade_state"] for order in orders} != {"NOTPAY"}:
                raise ControlError(409, "combined order is not NOTPAY")
            for order in orders:
                self.store.put("orders", order["key"], {**order, "trade_state": "PAYERROR"})
        return self.view(combine)


def install_routes(app: FastAPI, sandbox: Sandbox, v3: V3Http) -> Combines:
    authenticated, json_body, wx_response = v3.authenticated, v3.json_body, v3.wx_response
    combines = Combines(sandbox)
    prefix = "/v3/combine-transactions"

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    @app.post(prefix + "/out-trade-no/{combine_out_trade_no}/close")
    async def close_combined(combine_out_trade_no: str, request: Request) -> Response:
        merchant, body = await authenticated(request)
        combines.close(merchant, combine_out_trade_no, json_body(request, body))
        return wx_response(204, None)

    @app.get(prefix + "/out-trade-no/{combine_out_trade_no}")
    async def query_combined(combine_out_trade_no: str, request: Request) -> Response:
        merchant, _ = await authenticated(request)
        if request.query_params:
            raise WxError(400, "PARAM_ERROR", "the combined query takes no query parameters")
        return wx_response(200, combines.query(merchant, combine_out_trade_no))

    @app.post(prefix + "/{kind}")
    async def create_combined(kind: str, request: Request) -> Response:
        merchant, body = await authenticated(request)
        return wx_response(200, combines.create(merchant, kind, json_body(request, body), base_url=base_url(request)))

    @app.get("/control/combine-orders/{combine_out_trade_no}")
    async def get_combined(combine_out_trade_no: str, mchid: str | None = None) -> dict[str, Any]:
        return combines.view(combines.find_for_control(combine_out_trade_no, mchid))

    @app.post("/control/combine-orders/{combine_out_trade_no}/approve")
    async def approve_combined(combine_out_trade_no: str, request: Request, mchid: str | None = None) -> dict[str, Any]:
        """The payer enters the password once: every sub-order is paid, one callback."""
        raw = await request.body()
        options = json.loads(raw) if raw else {}
        if not isinstance(options, dict) or set(options) - {"payer_openid", "bank_type"}:
            raise ControlError(422, "body: {payer_openid?, bank_type?}")
        return combines.approve(combine_out_trade_no, mchid, options.get("payer_openid"), options.get("bank_type"))

    @app.post("/control/combine-orders/{combine_out_trade_no}/decline")
    async def decline_combined(combine_out_trade_no: str, mchid: str | None = None) -> dict[str, Any]:
        return combines.decline(combine_out_trade_no, mchid)

    return combines
