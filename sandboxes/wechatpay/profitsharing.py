"""WeChat Pay v3 profit sharing (分账, docs/protocols/wechatpay.md §11) in the sandbox: receivers, orders,
unsplit amount.

Strict, like the rest of the sandbox: the paid order must have been created with
`settle_info.profit_sharing=true`; only documented fields; receivers must be added first (otherwise the
receiver line ends `CLOSED` with `NO_RELATION`, as WeChat reports it); the total of all orders of a
transaction may not exceed `max_ratio` (30 %, WeChat's default for a merchant) of the order total nor its
unsplit amount. Orders finish at once (`FINISHED`); `unfreeze_unsplit` or `orders/unfreeze` releases the
rest to the merchant. Return orders (回退) take money back from a MERCHANT_ID receiver, at most what it
received from that order, and succeed at once. Receivers can be deleted (idempotent).
Not modelled: `name` decryption (a `name` is accepted only with a `Wechatpay-Serial` header),
profit-sharing bills, callbacks to receivers.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from sandboxes.common.store import Document
from sandboxes.wechatpay.sandbox import Sandbox, WxError, now_cst, rfc3339

if TYPE_CHECKING:  # app.py builds the object and imports this module
    from sandboxes.wechatpay.app import V3Http

RECEIVER_TYPES = frozenset({"MERCHANT_ID", "PERSONAL_OPENID", "PERSONAL_SUB_OPENID"})
RELATION_TYPES = frozenset(
    {
        "SERVICE_PROVIDER",
        "STORE",
        "STAFF",
        "STORE_OWNER",
        "PARTNER",
        "HEADQUARTER",
        "BRAND",
        "DISTRIBUTOR",
        "USER",
        "SUPPLIER",
        "CUSTOM",
    }
)
MAX_RATIO_BPS = 3000
RECEIVERS_PER_ORDER_MAX = 50
ORDER_FIELDS = frozenset(
    {"sub_mchid", "appid", "sub_appid", "transaction_id", "out_order_no", "receivers", "unfreeze_unsplit"}
)
RECEIVER_FIELDS = frozenset({"type", "account", "name", "amount", "description"})
ADD_FIELDS = frozenset(
    {"sub_mchid", "appid", "sub_appid", "type", "account", "name", "relation_type", "custom_relation"}
)
DELETE_FIELDS = frozenset({"sub_mchid", "appid", "sub_appid", "type", "account"})
UNFREEZE_FIELDS = frozenset({"sub_mchid", "transaction_id", "out_order_no", "description"})
RETURN_FIELDS = frozenset(
    {"sub_mchid", "order_id", "out_order_no", "out_return_no", "return_mchid", "amount", "description"}
)


def _fields(body: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    extra = set(body) - allowed
    if extra:
        raise WxError(400, "PARAM_ERROR", f"{where}: unknown fields {sorted(extra)}")


def _text(body: dict[str, Any], name: str, max_length: int = 256) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise WxError(400, "PARAM_ERROR", f"{name} is required (string, ≤ {max_length})")
    return value


def _same_request(sandbox: Sandbox, collection: str, key: str, body: dict[str, Any], name: str) -> Document | None:
    """The document an earlier identical request made (a retry answers it again); the same number with
    another request is INVALID_REQUEST."""
    existing = sandbox.store.get(collection, key)
    if existing is not None and existing["request"] != body:
        raise WxError(400, "INVALID_REQUEST", f"{name} already used with different parameters")
    return existing


def _scope(sandbox: Sandbox, merchant: Document, body: dict[str, Any]) -> str:
    """Direct merchant: its mchid; service provider: `sp/sub` (the sub-merchant must be bound)."""
    sub = body.get("sub_mchid")
    return sandbox._scope(merchant, partner=bool(sub), sub_mchid=sub)


def add_receiver(sandbox: Sandbox, merchant: Document, body: dict[str, Any], *, has_serial: bool) -> dict[str, Any]:
    _fields(body, ADD_FIELDS, "receivers/add")
    kind, account = _text(body, "type"), _text(body, "account", 64)
    relation = _text(body, "relation_type")
    if kind not in RECEIVER_TYPES:
        raise WxError(400, "PARAM_ERROR", f"type must be one of {sorted(RECEIVER_TYPES)}")
    if relation not in RELATION_TYPES:
        raise WxError(400, "PARAM_ERROR", f"relation_type must be one of {sorted(RELATION_TYPES)}")
    if relation == "CUSTOM" and not body.get("custom_relation"):
        raise WxError(400, "PARAM_ERROR", "custom_relation is required for relation_type CUSTOM")
    if body.get("name") is not None and not has_serial:
        raise WxError(400, "PARAM_ERROR", "a request carrying name needs the Wechatpay-Serial header")
    scope = _scope(sandbox, merchant, body)
    receiver = {
        "type": kind,
        "account": account,
        "relation_type": relation,
        "custom_relation": body.get("custom_relation"),
    }
    sandbox.store.put("ps_receivers", f"{scope}:{kind}:{account}", receiver)
    view = {k: v for k, v in receiver.items() if v is not None}
    if body.get("sub_mchid"):
        view["sub_mchid"] = body["sub_mchid"]
    return view


def _shared_minor(sandbox: Sandbox, order_key: str) -> int:
    return sum(
        int(r["amount"])
        for o in sandbox.store.list("ps_orders")
        if o["order_key"] == order_key
        for r in o["receivers"]
        if r["result"] == "SUCCESS"
    )


def create_order(sandbox: Sandbox, merchant: Document, body: dict[str, Any], *, has_serial: bool) -> dict[str, Any]:
    _fields(body, ORDER_FIELDS, "profitsharing/orders")
    scope = _scope(sandbox, merchant, body)
    transaction_id, out_order_no = _text(body, "transaction_id", 32), _text(body, "out_order_no", 64)
    if not isinstance(body.get("unfreeze_unsplit"), bool):
        raise WxError(400, "PARAM_ERROR", "unfreeze_unsplit (bool) is required")
    receivers = body.get("receivers")
    if not isinstance(receivers, list) or not 1 <= len(receivers) <= RECEIVERS_PER_ORDER_MAX:
        raise WxError(400, "PARAM_ERROR", f"receivers: 1..{RECEIVERS_PER_ORDER_MAX} entries")
    existing = _same_request(sandbox, "ps_orders", f"{scope}:{out_order_no}", body, "out_order_no")
    if existing is not None:
        return order_view(existing)
    order = sandbox.find_order(scope, transaction_id=transaction_id)
    if not order.get("profit_sharing"):
        raise WxError(400, "INVALID_REQUEST", "the order was not created with settle_info.profit_sharing=true")
    if order["trade_state"] not in ("SUCCESS", "REFUND"):
        raise WxError(400, "INVALID_REQUEST", "the order is not paid")
    if order.get("ps_unfrozen"):
        raise WxError(400, "INVALID_REQUEST", "the order's unsplit amount was already released")
    lines: list[dict[str, Any]] = []
    for i, receiver in enumerate(receivers):
        if not isinstance(receiver, dict):
            raise WxError(400, "PARAM_ERROR", f"receivers[{i}] must be an object")
        _fields(receiver, RECEIVER_FIELDS, f"receivers[{i}]")
        kind, account = _text(receiver, "type"), _text(receiver, "account", 64)
        description = _text(receiver, "description", 80)
        amount = receiver.get("amount")
        if kind not in RECEIVER_TYPES or isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise WxError(400, "PARAM_ERROR", f"receivers[{i}]: bad type or amount")
        if receiver.get("name") is not None and not has_serial:
            raise WxError(400, "PARAM_ERROR", "a request carrying name needs the Wechatpay-Serial header")
        related = sandbox.store.get("ps_receivers", f"{scope}:{kind}:{account}") is not None
        lines.append(
            {
                "type": kind,
                "account": account,
                "amount": amount,
                "description": description,
                "result": "SUCCESS" if related else "CLOSED",
                "fail_reason": None if related else "NO_RELATION",
            }
        )
    shared_before = _shared_minor(sandbox, order["key"])
    asked = sum(line["amount"] for line in lines if line["result"] == "SUCCESS")
    if shared_before + asked > order["total"] * MAX_RATIO_BPS // 10_000:
        raise WxError(400, "INVALID_REQUEST", "分账金额超出最大分账比例 (more than the max ratio of the order)")
    now = rfc3339(now_cst())
    document = {
        "key": f"{scope}:{out_order_no}",
        "order_key": order["key"],
        "transaction_id": transaction_id,
        "out_order_no": out_order_no,
        "order_id": f"3008450740{secrets.randbelow(10**20):020d}",
        "state": "FINISHED",
        "sub_mchid": body.get("sub_mchid"),
        "request": body,
        "receivers": [
            {
                **line,
                "detail_id": f"3600{i:04d}{secrets.randbelow(10**20):020d}",
                "create_time": now,
                "finish_time": now,
            }
            for i, line in enumerate(lines)
        ],
    }
    if not sandbox.store.insert_if_absent("ps_orders", document["key"], document):
        document = sandbox.store.get("ps_orders", document["key"]) or document
    if body["unfreeze_unsplit"]:
        sandbox.store.update("orders", order["key"], lambda d: {**d, "ps_unfrozen": True})
    return order_view(document)


def order_view(document: Document) -> dict[str, Any]:
    view: dict[str, Any] = {
        "transaction_id": document["transaction_id"],
        "out_order_no": document["out_order_no"],
        "order_id": document["order_id"],
        "state": document["state"],
        "receivers": [{k: v for k, v in r.items() if v is not None} for r in document["receivers"]],
    }
    if document.get("sub_mchid"):
        view["sub_mchid"] = document["sub_mchid"]
    return view


def get_order(sandbox: Sandbox, merchant: Document, out_order_no: str, query: dict[str, str]) -> dict[str, Any]:
    if set(query) - {"transaction_id", "sub_mchid"} or "transaction_id" not in query:
        raise WxError(400, "PARAM_ERROR", "query: transaction_id (required), sub_mchid")
    document = sandbox.store.get("ps_orders", f"{_scope(sandbox, merchant, query)}:{out_order_no}")
    if document is None or document["transaction_id"] != query["transaction_id"]:
        raise WxError(404, "RESOURCE_NOT_EXISTS", "profit sharing order does not exist")
    return order_view(document)


def delete_receiver(sandbox: Sandbox, merchant: Document, body: dict[str, Any]) -> dict[str, Any]:
    """receivers/delete: the relation ends; deleting an absent one answers the same (idempotent) [L]."""
    _fields(body, DELETE_FIELDS, "receivers/delete")
    kind, account = _text(body, "type"), _text(body, "account", 64)
    _text(body, "appid", 32)
    if kind not in RECEIVER_TYPES:
        raise WxError(400, "PARAM_ERROR", f"type must be one of {sorted(RECEIVER_TYPES)}")
    sandbox.store.delete("ps_receivers", f"{_scope(sandbox, merchant, body)}:{kind}:{account}")
    view = {"type": kind, "account": account}
    if body.get("sub_mchid"):
        view["sub_mchid"] = body["sub_mchid"]
    return view


def unfreeze(sandbox: Sandbox, merchant: Document, body: dict[str, Any]) -> dict[str, Any]:
    """orders/unfreeze: release what is still frozen to the merchant; one line, the merchant itself."""
    _fields(body, UNFREEZE_FIELDS, "orders/unfreeze")
    scope = _scope(sandbox, merchant, body)
    transaction_id, out_order_no = _text(body, "transaction_id", 32), _text(body, "out_order_no", 64)
    description = _text(body, "description", 80)
    existing = _same_request(sandbox, "ps_orders", f"{scope}:{out_order_no}", body, "out_order_no")
    if existing is not None:
        return order_view(existing)
    order = sandbox.find_order(scope, transaction_id=transaction_id)
    if not order.get("profit_sharing") or order["trade_state"] not in ("SUCCESS", "REFUND"):
        raise WxError(400, "INVALID_REQUEST", "the order is not a paid profit-sharing order")
    if order.get("ps_unfrozen"):
        raise WxError(400, "INVALID_REQUEST", "订单已解冻 (the unsplit amount was already released)")
    now = rfc3339(now_cst())
    released = order["total"] - _shared_minor(sandbox, order["key"])
    document = {
        "key": f"{scope}:{out_order_no}",
        "order_key": order["key"],
        "transaction_id": transaction_id,
        "out_order_no": out_order_no,
        "order_id": f"3008450740{secrets.randbelow(10**20):020d}",
        "state": "FINISHED",
        "sub_mchid": body.get("sub_mchid"),
        "request": body,
        "unfreeze": True,
        "receivers": [
            {
                "type": "MERCHANT_ID",
                "account": order.get("sub_mchid") or order["mchid"],
                "amount": released,
                "description": description,
                "result": "SUCCESS",
                "fail_reason": None,
                "detail_id": f"3600{secrets.randbelow(10**24):024d}",
                "create_time": now,
                "finish_time": now,
            }
        ],
    }
    sandbox.store.insert_if_absent("ps_orders", document["key"], document)
    sandbox.store.update("orders", order["key"], lambda d: {**d, "ps_unfrozen": True})
    return order_view(document)


def _returned_minor(sandbox: Sandbox, scope: str, out_order_no: str, account: str) -> int:
    return sum(
        int(r["amount"])
        for r in sandbox.store.list("ps_returns")
        if r["scope"] == scope and r["out_order_no"] == out_order_no and r["return_mchid"] == account
    )


def create_return(sandbox: Sandbox, merchant: Document, body: dict[str, Any]) -> dict[str, Any]:
    """return-orders: take back from a MERCHANT_ID receiver at most what it got from that order."""
    _fields(body, RETURN_FIELDS, "return-orders")
    scope = _scope(sandbox, merchant, body)
    out_return_no, return_mchid = _text(body, "out_return_no", 64), _text(body, "return_mchid", 32)
    description = _text(body, "description", 80)
    amount = body.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise WxError(400, "PARAM_ERROR", "amount must be a positive integer number of fen")
    if bool(body.get("order_id")) == bool(body.get("out_order_no")):
        raise WxError(400, "PARAM_ERROR", "give exactly one of order_id and out_order_no")
    key = f"{scope}:{out_return_no}"
    existing = _same_request(sandbox, "ps_returns", key, body, "out_return_no")
    if existing is not None:
        return return_view(existing)
    orders = [
        o
        for o in sandbox.store.list("ps_orders")
        if o["key"].startswith(scope + ":")
        and (o["order_id"] == body.get("order_id") or o["out_order_no"] == body.get("out_order_no"))
    ]
    if not orders:
        raise WxError(404, "RESOURCE_NOT_EXISTS", "分账单不存在 (profit sharing order does not exist)")
    order = orders[0]
    received = sum(
        int(r["amount"])
        for r in order["receivers"]
        if r["type"] == "MERCHANT_ID"
        and r["account"] == return_mchid
        and r["result"] == "SUCCESS"
        and not order.get("unfreeze")
    )
    if received == 0:
        raise WxError(400, "INVALID_REQUEST", "return_mchid received nothing from this order")
    if _returned_minor(sandbox, scope, order["out_order_no"], return_mchid) + amount > received:
        raise WxError(400, "INVALID_REQUEST", "回退金额超过分账金额 (more than the receiver got)")
    now = rfc3339(now_cst())
    document = {
        "key": key,
        "scope": scope,
        "sub_mchid": body.get("sub_mchid"),
        "order_id": order["order_id"],
        "out_order_no": order["out_order_no"],
        "out_return_no": out_return_no,
        "return_id": f"3008450740{secrets.randbelow(10**20):020d}",
        "return_mchid": return_mchid,
        "amount": amount,
        "description": description,
        "result": "SUCCESS",
        "create_time": now,
        "finish_time": now,
        "request": body,
    }
    if not sandbox.store.insert_if_absent("ps_returns", key, document):
        document = sandbox.store.get("ps_returns", key) or document
    return return_view(document)


def return_view(document: Document) -> dict[str, Any]:
    view = {
        k: document[k]
        for k in (
            "order_id",
            "out_order_no",
            "out_return_no",
            "return_id",
            "return_mchid",
            "amount",
            "description",
            "result",
            "create_time",
            "finish_time",
        )
    }
    if document.get("sub_mchid"):
        view["sub_mchid"] = document["sub_mchid"]
    return view


def get_return(sandbox: Sandbox, merchant: Document, out_return_no: str, query: dict[str, str]) -> dict[str, Any]:
    if set(query) - {"out_order_no", "sub_mchid"} or not query.get("out_order_no"):
        raise WxError(400, "PARAM_ERROR", "query: out_order_no (required), sub_mchid")
    document = sandbox.store.get("ps_returns", f"{_scope(sandbox, merchant, query)}:{out_return_no}")
    if document is None or document["out_order_no"] != query["out_order_no"]:
        raise WxError(404, "RESOURCE_NOT_EXISTS", "return order does not exist")
    return return_view(document)


def merchant_config(sandbox: Sandbox, merchant: Document, sub_mchid: str) -> dict[str, Any]:
    """merchant-configs/{sub_mchid}: the most a service provider may split of a sub-merchant's order."""
    sandbox._scope(merchant, partner=True, sub_mchid=sub_mchid)
    return {"sub_mchid": sub_mchid, "max_ratio": MAX_RATIO_BPS}


# 分账账单 columns [L: the official file-format page was not at hand; same conventions as the trade bill]
BILL_HEADER = [
    "分账发起时间",
    "分账方商户号",
    "分账方",
    "分账接收方类型",
    "分账接收方",
    "分账金额(元)",
    "分账结果",
    "微信订单号",
    "微信分账/回退单号",
    "商户分账/回退单号",
    "业务类型",
    "分账描述",
]


def bill(sandbox: Sandbox, merchant: Document, query: dict[str, str], base_url: str) -> dict[str, Any]:
    """bills?bill_date=&tar_type=&sub_mchid=: the day's profit-sharing lines and returns, as a file."""
    bill_date, gzipped = sandbox._bill_query(query, {"sub_mchid"})
    scope = _scope(sandbox, merchant, query)

    def on_day(moment: str) -> bool:
        return moment[:10] == bill_date.isoformat()

    def yuan(fen: int) -> str:
        return f"{'-' if fen < 0 else ''}{abs(fen) // 100}.{abs(fen) % 100:02d}"

    rows: list[list[str]] = []
    for order in sandbox.store.list("ps_orders"):
        if not order["key"].startswith(scope + ":"):
            continue
        for line in order["receivers"]:
            if on_day(line["create_time"]):
                rows.append(
                    [
                        line["create_time"][:19].replace("T", " "),
                        merchant["mchid"],
                        scope.split("/")[-1],
                        line["type"],
                        line["account"],
                        yuan(line["amount"]),
                        line["result"],
                        order["transaction_id"],
                        order["order_id"],
                        order["out_order_no"],
                        "解冻给分账方" if order.get("unfreeze") else "分账",
                        line["description"],
                    ]
                )
    for returned in sandbox.store.list("ps_returns"):
        if returned["scope"] == scope and on_day(returned["create_time"]):
            rows.append(
                [
                    returned["create_time"][:19].replace("T", " "),
                    merchant["mchid"],
                    scope.split("/")[-1],
                    "MERCHANT_ID",
                    returned["return_mchid"],
                    yuan(-returned["amount"]),
                    returned["result"],
                    "",
                    returned["return_id"],
                    returned["out_return_no"],
                    "回退",
                    returned["description"],
                ]
            )
    if not rows:
        raise WxError(400, "NO_STATEMENT_EXIST", "no profit-sharing bill for this day")
    lines = [",".join(BILL_HEADER), *(",".join("`" + cell for cell in row) for row in sorted(rows))]
    content = ("\r\n".join(lines) + "\r\n").encode("utf-8")
    return sandbox._issue_bill_file(merchant, content, gzipped, base_url)


def unsplit_amount(sandbox: Sandbox, merchant: Document, transaction_id: str) -> dict[str, Any]:
    order = sandbox.find_order(str(merchant["mchid"]), transaction_id=transaction_id)
    remaining = 0 if order.get("ps_unfrozen") else order["total"] - _shared_minor(sandbox, order["key"])
    return {"transaction_id": transaction_id, "unsplit_amount": remaining}


def install_routes(app: FastAPI, sandbox: Sandbox, v3: V3Http) -> None:
    """Add the profit-sharing endpoints to the sandbox app (signed like every /v3 route)."""
    authenticated, json_body, wx_response = v3.authenticated, v3.json_body, v3.wx_response

    @app.post("/v3/profitsharing/receivers/add")
    async def ps_add_receiver(request: Request) -> Response:
        merchant, body = await authenticated(request)
        has_serial = bool(request.headers.get("wechatpay-serial"))
        return wx_response(200, add_receiver(sandbox, merchant, json_body(request, body), has_serial=has_serial))

    @app.post("/v3/profitsharing/orders")
    async def ps_create_order(request: Request) -> Response:
        merchant, body = await authenticated(request)
        has_serial = bool(request.headers.get("wechatpay-serial"))
        return wx_response(200, create_order(sandbox, merchant, json_body(request, body), has_serial=has_serial))

    @app.get("/v3/profitsharing/orders/{out_order_no}")
    async def ps_get_order(out_order_no: str, request: Request) -> Response:
        merchant, _ = await authenticated(request)
        return wx_response(200, get_order(sandbox, merchant, out_order_no, dict(request.query_params)))

    @app.get("/v3/profitsharing/merchant-configs/{sub_mchid}")
    async def ps_merchant_config(sub_mchid: str, request: Request) -> Response:
        merchant, _ = await authenticated(request)
        return wx_response(200, merchant_config(sandbox, merchant, sub_mchid))

    @app.get("/v3/profitsharing/bills")
    async def ps_bill(request: Request) -> Response:
        merchant, _ = await authenticated(request)
        return wx_response(200, bill(sandbox, merchant, dict(request.query_params), str(request.base_url).rstrip("/")))

    @app.post("/v3/profitsharing/receivers/delete")
    async def ps_delete_receiver(request: Request) -> Response:
        merchant, body = await authenticated(request)
        return wx_response(200, delete_receiver(sandbox, merchant, json_body(request, body)))

    @app.post("/v3/profitsharing/orders/unfreeze")
    async def ps_unfreeze(request: Request) -> Response:
        merchant, body = await authenticated(request)
        return wx_response(200, unfreeze(sandbox, merchant, json_body(request, body)))

    @app.post("/v3/profitsharing/return-orders")
    async def ps_create_return(request: Request) -> Response:
        merchant, body = await authenticated(request)
        return wx_response(200, create_return(sandbox, merchant, json_body(request, body)))

    @app.get("/v3/profitsharing/return-orders/{out_return_no}")
    async def ps_get_return(out_return_no: str, request: Request) -> Response:
        merchant, _ = await authenticated(request)
        return wx_response(200, get_return(sandbox, merchant, out_return_no, dict(request.query_params)))

    @app.get("/v3/profitsharing/transactions/{transaction_id}/amounts")
    async def ps_amounts(transaction_id: str, request: Request) -> Response:
        merchant, _ = await authenticated(request)
        return wx_response(200, unsplit_amount(sandbox, merchant, transaction_id))
