"""create_app(settings) → the WeChat Pay v3 sandbox as a FastAPI app: wiring and thin routes only.

Channel routes (`/v3/...`) answer exactly like api.mch.weixin.qq.com: signed JSON, WeChat error
bodies, 204 for close, an unsigned bill download. Control routes (`/control/...`) and the pay
page are the sandbox's own and are not signed.
"""

from __future__ import annotations

import html
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandboxes.common.control import build_common_router
from sandboxes.common.faults import FaultMiddleware
from sandboxes.common.runner import NATIVE_TELEMETRY_OFF
from sandboxes.common.store import Document
from sandboxes.wechatpay.app_bridge import install_routes as install_app_bridge_routes
from sandboxes.wechatpay.busifavor import install_routes as install_busifavor_routes
from sandboxes.wechatpay.combine import install_routes as install_combine_routes
from sandboxes.wechatpay.favor import install_routes as install_favor_routes
from sandboxes.wechatpay.oauth import app_secret
from sandboxes.wechatpay.oauth import install_routes as install_oauth_routes
from sandboxes.wechatpay.profitsharing import install_routes as install_profitsharing_routes
from sandboxes.wechatpay.sandbox import ControlError, Sandbox, WxError
from sandboxes.wechatpay.settings import SandboxSettings
from sandboxes.wechatpay.transfers import install_routes as install_transfer_routes


class SubMerchant(BaseModel):
    sub_mchid: str
    sub_appid: str | None = None


class MerchantRegisterRequest(BaseModel):
    """Register a direct merchant or a service provider (with its sub-merchants)."""

    model_config = ConfigDict(extra="forbid")

    mchid: str = Field(min_length=1, max_length=32)
    appid: str | None = None
    appids: list[str] = Field(default_factory=list, max_length=50)
    merchant_cert_serial: str | None = None
    merchant_public_key_pem: str | None = None
    generate_key_pair: bool = False
    apiv3_key: str | None = None
    # How this merchant verifies WeChat: public-key mode (PUB_KEY_ID_...) or platform certificates.
    platform_verification: Literal["public_key", "certificate"] | None = None
    sub_merchants: list[SubMerchant] = Field(default_factory=list, max_length=1000)


class OrderApproveRequest(BaseModel):
    payer_openid: str | None = None
    bank_type: str | None = None
    coupon_id: str | None = None  # the payer pays with one of its 代金券 (favor.py)


class PayerCodeRequest(BaseModel):
    """A payer opens 付款码 in WeChat; `password_required` makes the charge wait (USERPAYING) until the
    control API approves (password entered) or declines it; `balance_minor` makes larger charges NOTENOUGH."""

    model_config = ConfigDict(extra="forbid")

    password_required: bool = False
    balance_minor: int | None = Field(default=None, ge=0)
    openid: str | None = None
    coupon_id: str | None = None  # the payer's 代金券 the charge uses, if it applies (favor.py)


class RefundFailRequest(BaseModel):
    status: Literal["ABNORMAL", "CLOSED"] = "ABNORMAL"


class BillDiscrepancyRequest(BaseModel):
    """drop_line: omit the line; change_amount: report amount_minor instead; report_success: list a
    SUCCESS payment line for an order that did not succeed. With out_refund_no it targets the refund line."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["drop_line", "change_amount", "report_success"]
    out_trade_no: str
    out_refund_no: str | None = None
    amount_minor: int | None = None
    mchid: str | None = None  # the order scope: mchid, or "sp_mchid/sub_mchid"


@dataclass(frozen=True)
class V3Http:
    """What every signed /v3 route of a resource module (combine, transfers, favor, busifavor, profit sharing)
    takes from this app: the caller's signature checked (`authenticated` → the merchant and the raw body), a
    body parsed as strictly as WeChat parses it (`json_body`), and an answer signed as WeChat signs it
    (`wx_response`). One object instead of the same three callables in every module's signature."""

    authenticated: Callable[[Request], Awaitable[tuple[Document, bytes]]]
    json_body: Callable[[Request, bytes], dict[str, Any]]
    wx_response: Callable[[int, dict[str, Any] | None], Response]


def create_app(settings: SandboxSettings | None = None) -> FastAPI:
    sandbox = Sandbox(settings or SandboxSettings.from_env())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await sandbox.start()
        yield
        await sandbox.stop()

    app = FastAPI(title="WeChat Pay v3 sandbox", lifespan=lifespan, telemetry=NATIVE_TELEMETRY_OFF)
    app.state.sandbox = sandbox

    def wx_response(status: int, payload: dict[str, Any] | None = None) -> Response:
        body = (
            b"" if payload is None else json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        )
        return Response(
            content=body,
            status_code=status,
            headers=sandbox.signed_headers(body),
            media_type="application/json" if payload is not None else None,
        )

    def system_error() -> Response:
        return wx_response(500, {"code": "SYSTEM_ERROR", "message": "系统错误 (sandbox fault injection)"})

    app.add_middleware(FaultMiddleware, faults=sandbox.faults, error_response=system_error)
    app.include_router(build_common_router(channel="wechatpay", faults=sandbox.faults, dispatcher=sandbox.dispatcher))

    @app.exception_handler(WxError)
    async def on_wx_error(_: Request, exc: WxError) -> Response:
        payload: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.detail:
            payload["detail"] = exc.detail
        return wx_response(exc.status, payload)

    @app.exception_handler(ControlError)
    async def on_control_error(_: Request, exc: ControlError) -> Response:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/v3/"):
            code = "NOT_FOUND" if exc.status_code == 404 else "INVALID_REQUEST"
            return wx_response(exc.status_code, {"code": code, "message": str(exc.detail)})
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    async def authenticated(request: Request) -> tuple[Document, bytes]:
        body = await request.body()
        query = request.scope.get("query_string", b"")
        uri = request.scope.get("raw_path") or request.url.path.encode()
        uri = uri + (b"?" + query if query else b"")
        merchant = sandbox.authenticate(request.method, uri, body, dict(request.headers))
        return merchant, body

    def json_body(request: Request, body: bytes) -> dict[str, Any]:
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise WxError(400, "PARAM_ERROR", "Content-Type must be application/json")
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise WxError(400, "PARAM_ERROR", "body is not valid JSON") from exc
        if not isinstance(parsed, dict):
            raise WxError(400, "PARAM_ERROR", "body must be a JSON object")
        return parsed

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def query_scope(merchant: Document, request: Request, *, partner: bool) -> str:
        query = dict(request.query_params)
        expected = {"sp_mchid", "sub_mchid"} if partner else {"mchid"}
        if set(query) != expected:
            raise WxError(400, "PARAM_ERROR", f"query must be exactly {sorted(expected)}")
        if query["sp_mchid" if partner else "mchid"] != merchant["mchid"]:
            raise WxError(400, "INVALID_REQUEST", "mchid does not match the signing mchid")
        return sandbox._scope(merchant, partner=partner, sub_mchid=query.get("sub_mchid"))

    v3 = V3Http(authenticated=authenticated, json_body=json_body, wx_response=wx_response)
    install_profitsharing_routes(app, sandbox, v3)
    install_transfer_routes(app, sandbox, v3)
    install_combine_routes(app, sandbox, v3)
    install_oauth_routes(app, sandbox)
    install_app_bridge_routes(app, sandbox)
    install_favor_routes(app, sandbox, v3)
    install_busifavor_routes(app, sandbox, v3)

    # ------------------------------------------------------------------ WeChat Pay v3: orders
    def is_partner(request: Request) -> bool:
        return request.url.path.startswith("/v3/pay/partner/")

    @app.post("/v3/pay/transactions/codepay")
    @app.post("/v3/pay/partner/transactions/codepay")
    async def codepay(request: Request) -> Response:
        merchant, body = await authenticated(request)
        return wx_response(*sandbox.codepay(merchant, json_body(request, body), partner=is_partner(request)))

    @app.post("/v3/pay/transactions/out-trade-no/{out_trade_no}/reverse")
    @app.post("/v3/pay/partner/transactions/out-trade-no/{out_trade_no}/reverse")
    async def reverse(out_trade_no: str, request: Request) -> Response:
        merchant, body = await authenticated(request)
        sandbox.reverse_order(merchant, out_trade_no, json_body(request, body), partner=is_partner(request))
        return wx_response(204)

    @app.post("/v3/pay/transactions/{kind}")
    async def prepay_direct(kind: str, request: Request) -> Response:
        merchant, body = await authenticated(request)
        return wx_response(
            200,
            sandbox.create_order(merchant, kind, json_body(request, body), partner=False, base_url=base_url(request)),
        )

    @app.post("/v3/pay/partner/transactions/{kind}")
    async def prepay_partner(kind: str, request: Request) -> Response:
        merchant, body = await authenticated(request)
        return wx_response(
            200,
            sandbox.create_order(merchant, kind, json_body(request, body), partner=True, base_url=base_url(request)),
        )

    @app.get("/v3/pay/transactions/out-trade-no/{out_trade_no}")
    async def query_direct(out_trade_no: str, request: Request) -> Response:
        merchant, _ = await authenticated(request)
        order = sandbox.find_order(query_scope(merchant, request, partner=False), out_trade_no=out_trade_no)
        return wx_response(200, sandbox.transaction_view(order))

    @app.get("/v3/pay/transactions/id/{transaction_id}")
    async def query_direct_by_id(transaction_id: str, request: Request) -> Response:
        merchant, _ = await authenticated(request)
        order = sandbox.find_order(query_scope(merchant, request, partner=False), transaction_id=transaction_id)
        return wx_response(200, sandbox.transaction_view(order))

    @app.get("/v3/pay/partner/transactions/out-trade-no/{out_trade_no}")
    async def query_partner(out_trade_no: str, request: Request) -> Response:
        merchant, _ = await authenticated(request)
        order = sandbox.find_order(query_scope(merchant, request, partner=True), out_trade_no=out_trade_no)
        return wx_response(200, sandbox.transaction_view(order))

    @app.get("/v3/pay/partner/transactions/id/{transaction_id}")
    async def query_partner_by_id(transaction_id: str, request: Request) -> Response:
        merchant, _ = await authenticated(request)
        order = sandbox.find_order(query_scope(merchant, request, partner=True), transaction_id=transaction_id)
        return wx_response(200, sandbox.transaction_view(order))

    @app.post("/v3/pay/transactions/out-trade-no/{out_trade_no}/close")
    async def close_direct(out_trade_no: str, request: Request) -> Response:
        merchant, body = await authenticated(request)
        sandbox.close_order(merchant, out_trade_no, json_body(request, body), partner=False)
        return wx_response(204)

    @app.post("/v3/pay/partner/transactions/out-trade-no/{out_trade_no}/close")
    async def close_partner(out_trade_no: str, request: Request) -> Response:
        merchant, body = await authenticated(request)
        sandbox.close_order(merchant, out_trade_no, json_body(request, body), partner=True)
        return wx_response(204)

    # ------------------------------------------------------------------ refunds and bills
    @app.post("/v3/refund/domestic/refunds")
    async def create_refund(request: Request) -> Response:
        merchant, body = await authenticated(request)
        return wx_response(200, sandbox.create_refund(merchant, json_body(request, body)))

    @app.post("/v3/refund/domestic/refunds/{refund_id}/apply-abnormal-refund")
    async def apply_abnormal_refund(refund_id: str, request: Request) -> Response:
        merchant, body = await authenticated(request)
        return wx_response(
            200,
            sandbox.apply_abnormal_refund(
                merchant, refund_id, json_body(request, body), request.headers.get("wechatpay-serial")
            ),
        )

    @app.get("/v3/refund/domestic/refunds/{out_refund_no}")
    async def query_refund(out_refund_no: str, request: Request) -> Response:
        merchant, _ = await authenticated(request)
        query = dict(request.query_params)
        if set(query) - {"sub_mchid"}:
            raise WxError(400, "PARAM_ERROR", "only sub_mchid is allowed in the query")
        return wx_response(200, sandbox.get_refund(merchant, out_refund_no, query.get("sub_mchid")))

    @app.get("/v3/bill/tradebill")
    async def trade_bill(request: Request) -> Response:
        merchant, _ = await authenticated(request)
        return wx_response(200, sandbox.request_bill(merchant, dict(request.query_params), base_url(request)))

    @app.get("/v3/bill/fundflowbill")
    async def fundflow_bill(request: Request) -> Response:
        merchant, _ = await authenticated(request)
        return wx_response(200, sandbox.request_fundflow_bill(merchant, dict(request.query_params), base_url(request)))

    @app.get("/v3/billdownload/file")
    async def bill_file(request: Request) -> Response:
        merchant, _ = await authenticated(request)  # the request is signed; the reply is not (§1.3)
        content = sandbox.download_bill(merchant, dict(request.query_params))
        return Response(content=content, media_type="application/octet-stream")

    @app.get("/v3/certificates")
    async def platform_certificates(request: Request) -> Response:
        merchant, _ = await authenticated(request)
        if set(request.query_params) - {"algorithm_type"} or request.query_params.get("algorithm_type", "RSA") != "RSA":
            raise WxError(400, "PARAM_ERROR", "only algorithm_type=RSA is supported")
        return wx_response(200, sandbox.certificates_view(merchant))

    # ------------------------------------------------------------------ control API
    @app.post("/control/merchants")
    async def register_merchant(request: MerchantRegisterRequest) -> dict[str, Any]:
        registered = sandbox.register_merchant(request.model_dump())
        # each appid's AppSecret, for the OAuth that yields a JSAPI / mini-program payer's openid
        return {**registered, "app_secrets": {appid: app_secret(sandbox, appid) for appid in registered["appids"]}}

    @app.get("/control/platform-key")
    async def platform_key() -> dict[str, str]:
        return {
            "platform_public_key_pem": sandbox.platform_key.public_pem,
            "platform_public_key_id": sandbox.platform_key_id,
        }

    @app.post("/control/payer-codes")
    async def payer_code(request: PayerCodeRequest) -> dict[str, Any]:
        return sandbox.issue_payer_code(
            password_required=request.password_required,
            balance_minor=request.balance_minor,
            openid=request.openid,
            coupon_id=request.coupon_id,
        )

    @app.get("/control/platform-certificates")
    async def list_platform_certificates() -> dict[str, Any]:
        return {"certificates": sandbox.certificates_summary()}

    @app.post("/control/platform-certificates/rotate")
    async def rotate_platform_certificate() -> dict[str, Any]:
        """Issue a new platform certificate; it signs from now on, the old one stays listed."""
        issued = sandbox.certificates.rotate()
        return {"serial_no": issued.serial_no, "certificates": sandbox.certificates_summary()}

    @app.get("/control/orders/{out_trade_no}")
    async def get_order(out_trade_no: str, mchid: str | None = None) -> dict[str, Any]:
        order = sandbox.find_orders_for_control(out_trade_no, mchid)
        refunds = [sandbox.refund_view(r) for r in sandbox.store.list("refunds") if r["order_key"] == order["key"]]
        return {
            "order": sandbox.transaction_view(order),
            "notify_url": order["notify_url"],
            "scope": order["scope"],
            "refunds": refunds,
        }

    async def optional_json(request: Request) -> dict[str, Any]:
        body = await request.body()
        if not body or not request.headers.get("content-type", "").startswith("application/json"):
            return {}
        parsed = json.loads(body)
        return parsed if isinstance(parsed, dict) else {}

    @app.post("/control/orders/{out_trade_no}/approve", response_model=None)
    async def approve(
        out_trade_no: str, request: Request, mchid: str | None = None, redirect: bool = False
    ) -> dict[str, Any] | Response:
        extra = OrderApproveRequest.model_validate(await optional_json(request))
        order = sandbox.approve_order(out_trade_no, mchid, extra.payer_openid, extra.bank_type, extra.coupon_id)
        if redirect:
            return RedirectResponse(f"/pay/{out_trade_no}?mchid={order['scope']}", status_code=303)
        return {"order": sandbox.transaction_view(order)}

    @app.post("/control/orders/{out_trade_no}/decline", response_model=None)
    async def decline(out_trade_no: str, mchid: str | None = None, redirect: bool = False) -> dict[str, Any] | Response:
        order = sandbox.decline_order(out_trade_no, mchid)
        if redirect:
            return RedirectResponse(f"/pay/{out_trade_no}?mchid={order['scope']}", status_code=303)
        return {"order": sandbox.transaction_view(order)}

    @app.post("/control/refunds/{out_refund_no}/approve")
    async def approve_refund(out_refund_no: str, mchid: str | None = None) -> dict[str, Any]:
        refund = sandbox.find_refund_for_control(out_refund_no, mchid)
        return {"refund": sandbox.refund_view(sandbox.finish_refund(refund["key"], "SUCCESS"))}

    @app.post("/control/refunds/{out_refund_no}/fail")
    async def fail_refund(out_refund_no: str, request: Request, mchid: str | None = None) -> dict[str, Any]:
        outcome = RefundFailRequest.model_validate(await optional_json(request))
        refund = sandbox.find_refund_for_control(out_refund_no, mchid)
        return {"refund": sandbox.refund_view(sandbox.finish_refund(refund["key"], outcome.status))}

    @app.post("/control/bills/{bill_date}/discrepancies")
    async def add_discrepancy(bill_date: date, request: BillDiscrepancyRequest) -> dict[str, Any]:
        return {"bill_date": bill_date.isoformat(), "items": sandbox.add_discrepancy(bill_date, request.model_dump())}

    # ------------------------------------------------------------------ the pay page (for people)
    @app.get("/pay/{out_trade_no}", response_class=HTMLResponse)
    async def pay_page(out_trade_no: str, mchid: str | None = None) -> HTMLResponse:
        order = sandbox.find_orders_for_control(out_trade_no, mchid)
        scope, state = html.escape(order["scope"]), order["trade_state"]
        number = html.escape(out_trade_no)
        yuan = f"{order['total'] // 100}.{order['total'] % 100:02d}"
        buttons = (
            ""
            if state != "NOTPAY"
            else (
                f'<form method="post" action="/control/orders/{number}/approve?mchid={scope}&redirect=true">'
                '<button type="submit">Approve (pay)</button></form>'
                f'<form method="post" action="/control/orders/{number}/decline?mchid={scope}&redirect=true">'
                '<button type="submit">Decline</button></form>'
            )
        )
        return HTMLResponse(
            "<!doctype html><html><head><meta charset='utf-8'><title>WeChat Pay sandbox</title></head><body>"
            f"<h1>WeChat Pay sandbox</h1><p>Order <b>{number}</b> of {scope}: "
            f"{html.escape(order['description'])}</p><p>Amount: ¥{yuan} CNY</p>"
            f"<p>State: <b>{html.escape(state)}</b></p>{buttons}</body></html>"
        )

    return app
