"""create_app(settings) → the Alipay sandbox: `/gateway.do`, the browser cashier, bills, control API.

The routes only: the methods' rules and state (strict where Alipay is strict) are `sandbox.py`'s `Sandbox`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sandboxes.alipay import app_bridge, payments, transfers, vouchers
from sandboxes.alipay.bills import DISCREPANCY_KINDS
from sandboxes.alipay.pages import cashier_page, error_page, result_page
from sandboxes.alipay.sandbox import (
    API_METHODS,
    BILL_PATH,
    BROWSER_METHODS,
    CHANNEL,
    DISCREPANCIES,
    GATEWAY_PATH,
    REQUEST_BODY_MAX_BYTES,
    GatewayError,
    Sandbox,
    invalid_argument,
    merge_params,
)
from sandboxes.alipay.settings import SandboxSettings
from sandboxes.alipay.trades import (
    UNSEEN,
    BizError,
    bill_window,
)
from sandboxes.common.control import build_common_router
from sandboxes.common.faults import FaultMiddleware
from sandboxes.common.runner import NATIVE_TELEMETRY_OFF, dispatching_lifespan


class _SystemErrorResponse(Response):
    """The error-rate fault: a signed Alipay system error for the requested method.

    Trade APIs answer 40004 ACQ.SYSTEM_ERROR and other methods 20000 isp.unknow-error, the two ways
    Alipay says "try again" (docs/protocols/alipay.md §3); non-gateway paths get a bare 503.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__()
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("path") != GATEWAY_PATH:
            await Response("Service Unavailable", status_code=503)(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body") or len(body) > REQUEST_BODY_MAX_BYTES:
                break
        try:
            method = merge_params(scope.get("query_string", b"").decode("latin-1"), body).get("method")
        except GatewayError:
            method = None
        if method and method.startswith("alipay.trade."):
            node = {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.SYSTEM_ERROR", "sub_msg": "系统错误"}
        else:
            node = {
                "code": "20000",
                "msg": "Service Currently Unavailable",
                "sub_code": "isp.unknow-error",
                "sub_msg": "系统繁忙",
            }
        await self.sandbox.respond(method, node)(scope, receive, send)


class AppRegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app_id: str | None = Field(default=None, pattern=r"^[0-9]{8,32}$")
    app_public_key_pem: str | None = None  # omit: the sandbox generates a key pair and returns the private key
    seller_id: str | None = Field(default=None, pattern=r"^2088[0-9]{12}$")
    cert_mode: bool = False  # certificate mode: the reply carries the app, Alipay and root certificates


class PayerCodeRequest(BaseModel):
    """The payer opens 付款码 in Alipay; `password_required` makes alipay.trade.pay answer 10003 until the
    control API approves (password entered); `balance_minor` makes larger charges BUYER_BALANCE_NOT_ENOUGH."""

    model_config = ConfigDict(extra="forbid")

    password_required: bool = False
    balance_minor: int | None = Field(default=None, ge=0)


class OauthCodeRequest(BaseModel):
    """A user authorises the merchant's H5 / mini-program (auth_base): the auth_code it hands over."""

    model_config = ConfigDict(extra="forbid")

    app_id: str
    buyer_id: str | None = Field(default=None, pattern=r"^2088[0-9]{12}$")


class BalanceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    available_minor: int = Field(ge=0)


class PayeeRequest(BaseModel):
    """Make a transfer payee unknown (PAYEE_NOT_EXIST) or fix its real name (PAYEE_USER_INFO_ERROR)."""

    model_config = ConfigDict(extra="forbid")

    identity: str
    exists: bool = True
    name: str | None = None


class MessageGatewayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://")


class AppPayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_string: str


class DiscrepancyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(pattern="^(" + "|".join(DISCREPANCY_KINDS) + ")$")
    out_trade_no: str
    out_request_no: str | None = None  # aim at a refund line instead of the payment line
    amount_minor: int | None = Field(default=None, ge=1)
    trade_no: str | None = None
    subject: str | None = None
    app_id: str | None = None  # None: applies to every app's bill for that date


APPROVE_PATH = "/control/trades/{out_trade_no}/approve"


def create_app(settings: SandboxSettings, *, clock: Callable[[], datetime] | None = None) -> FastAPI:
    sandbox = Sandbox(settings, clock or (lambda: datetime.now(UTC)))

    app = FastAPI(
        title="Alipay sandbox",
        lifespan=dispatching_lifespan(sandbox.dispatcher, sandbox.store),
        telemetry=NATIVE_TELEMETRY_OFF,
    )
    app.state.sandbox = sandbox
    app.include_router(build_common_router(channel=CHANNEL, faults=sandbox.faults, dispatcher=sandbox.dispatcher))
    app.add_middleware(FaultMiddleware, faults=sandbox.faults, error_response=lambda: _SystemErrorResponse(sandbox))
    app_bridge.install_routes(app, sandbox)  # the app's web authorisation and tradePay (app_bridge.py)

    # ------------------------------------------------------------------ the gateway

    async def gateway(request: Request) -> Response:
        """`/gateway.do`, GET and POST: every OpenAPI method (a Starlette route, `hot_routes` below)."""
        body = await request.body()
        if len(body) > REQUEST_BODY_MAX_BYTES:
            return sandbox.respond(None, invalid_argument("isv.invalid-parameter", "request too large").node)
        method: str | None = None
        cert_mode = False
        try:
            params = merge_params(request.url.query, body)
            cert_mode = bool(params.get("app_cert_sn"))
            method = params.get("method")
            if method is not None and method not in API_METHODS and method not in BROWSER_METHODS:
                raise invalid_argument("isv.invalid-method", f"不存在的方法名 {method}")
            caller = sandbox.authenticate(params)
            assert method is not None
            if method in BROWSER_METHODS:
                trade = sandbox.trades.create(
                    app_id=caller["app_id"],
                    method=method,
                    biz=sandbox.biz_content(params),
                    notify_url=params.get("notify_url"),
                    return_url=params.get("return_url"),
                )
                return RedirectResponse(f"/pay/cashier/{trade['trade_no']}", status_code=303)
            return sandbox.respond(
                method, sandbox.handle_api(method, caller, params, str(request.base_url)), cert_mode=cert_mode
            )
        except GatewayError as exc:
            if method in BROWSER_METHODS:
                node = exc.node
                return HTMLResponse(error_page(node["code"], node["sub_code"], node["sub_msg"]), status_code=400)
            return sandbox.respond(
                None if exc.error_response else method, exc.node, signed=exc.signed, cert_mode=cert_mode
            )
        except BizError as exc:
            if method in BROWSER_METHODS:
                return HTMLResponse(error_page(exc.code, exc.sub_code, exc.sub_msg), status_code=400)
            node = {"code": exc.code, "msg": exc.msg, "sub_code": exc.sub_code, "sub_msg": exc.sub_msg}
            return sandbox.respond(method, node, cert_mode=cert_mode)

    @app.get(BILL_PATH)
    async def download_bill(token: str) -> Response:
        file_name, data = sandbox.bill_zip(token)
        return Response(
            content=data,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{file_name}"'},
        )

    # ------------------------------------------------------------------ the buyer's browser

    def trade_by_no(trade_no: str) -> dict[str, Any]:
        trade = sandbox.trades.find_by_trade_no(trade_no)
        if trade is None:
            raise HTTPException(status_code=404, detail="no such trade")
        return trade

    @app.get("/pay/qr/{qr_token}", response_class=HTMLResponse)
    async def scan_qr(qr_token: str) -> HTMLResponse:
        for trade in sandbox.trades.list_for_app(None):
            if trade.get("qr_token") == qr_token and trade["method"] == "alipay.trade.precreate":
                try:
                    trade = sandbox.trades.scan(trade)
                except BizError as exc:
                    return HTMLResponse(error_page(exc.code, exc.sub_code, exc.sub_msg), status_code=400)
                return HTMLResponse(cashier_page(trade))
        raise HTTPException(status_code=404, detail="unknown QR code")

    @app.get("/pay/cashier/{trade_no}", response_class=HTMLResponse)
    async def cashier(trade_no: str) -> HTMLResponse:
        return HTMLResponse(cashier_page(trade_by_no(trade_no)))

    @app.post("/pay/cashier/{trade_no}/approve")
    async def cashier_approve(trade_no: str) -> Response:
        try:
            trade = sandbox.trades.pay(trade_by_no(trade_no))
        except BizError as exc:
            return HTMLResponse(error_page(exc.code, exc.sub_code, exc.sub_msg), status_code=409)
        location = sandbox.return_redirect(trade)
        if location is not None:
            return RedirectResponse(location, status_code=303)
        return HTMLResponse(result_page(trade, "支付成功 Paid"))

    @app.post("/pay/cashier/{trade_no}/decline")
    async def cashier_decline(trade_no: str) -> Response:
        try:
            trade = sandbox.trades.decline(trade_by_no(trade_no))
        except BizError as exc:
            return HTMLResponse(error_page(exc.code, exc.sub_code, exc.sub_msg), status_code=409)
        return HTMLResponse(result_page(trade, "已取消 Declined", trade.get("return_url")))

    # ------------------------------------------------------------------ control API

    @app.post("/control/apps")
    async def register_app(request: AppRegisterRequest) -> dict[str, Any]:
        return sandbox.register_app(request.app_id, request.app_public_key_pem, request.seller_id, request.cert_mode)

    @app.get("/control/apps/{app_id}")
    async def get_app(app_id: str) -> dict[str, Any]:
        found = sandbox.app(app_id)
        if found is None:
            raise HTTPException(status_code=404, detail="unknown app_id")
        return {**found, "alipay_public_key_pem": sandbox.platform_key.public_pem}

    def control_trade(out_trade_no: str, app_id: str | None) -> dict[str, Any]:
        try:
            trade = sandbox.trades.find_for_control(out_trade_no, app_id)
        except LookupError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        if trade is None:
            raise HTTPException(status_code=404, detail="no such trade")
        return trade

    def control_view(trade: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in trade.items() if k != "qr_token"}
        view["exists_at_alipay"] = trade["status"] != UNSEEN
        view["cashier_url"] = f"/pay/cashier/{trade['trade_no']}"
        return view

    def control_transition(out_trade_no: str, app_id: str | None, change: Callable[[dict[str, Any]], Any]) -> Any:
        try:
            return change(control_trade(out_trade_no, app_id))
        except BizError as exc:
            raise HTTPException(status_code=409, detail={"sub_code": exc.sub_code, "sub_msg": exc.sub_msg}) from exc

    @app.get("/control/trades/{out_trade_no}")
    async def get_trade(out_trade_no: str, app_id: str | None = None) -> dict[str, Any]:
        return control_view(control_trade(out_trade_no, app_id))

    @app.post("/control/trades/{out_trade_no}/scan")
    async def scan_trade(out_trade_no: str, app_id: str | None = None) -> dict[str, Any]:
        return control_view(control_transition(out_trade_no, app_id, sandbox.trades.scan))

    async def approve_trade(request: Request) -> JSONResponse:
        """`POST /control/trades/{out_trade_no}/approve[?app_id=&voucher_code=]`: pay the trade (an unscanned QR
        trade is scanned first), with the buyer's voucher if named (vouchers.py); includes the return redirect, if
        any (a Starlette route, `hot_routes` below)."""
        query = request.query_params
        trade = control_transition(
            request.path_params["out_trade_no"],
            query.get("app_id"),
            lambda doc: sandbox.pay_with_voucher(doc, query.get("voucher_code")),
        )
        return JSONResponse({**control_view(trade), "return_redirect_url": sandbox.return_redirect(trade)})

    @app.post("/control/trades/{out_trade_no}/finish")
    async def finish_trade(out_trade_no: str, app_id: str | None = None) -> dict[str, Any]:
        """End the refund window: TRADE_SUCCESS → TRADE_FINISHED (notified; refunds now refused)."""
        return control_view(control_transition(out_trade_no, app_id, sandbox.trades.finish))

    @app.post("/control/trades/{out_trade_no}/decline")
    async def decline_trade(out_trade_no: str, app_id: str | None = None) -> dict[str, Any]:
        return control_view(control_transition(out_trade_no, app_id, sandbox.trades.decline))

    @app.post("/control/apps/{app_id}/message-gateway")
    async def set_message_gateway(app_id: str, request: MessageGatewayRequest) -> dict[str, Any]:
        """Where the app's open-platform messages (商家券 `alipay.marketing.activity.message.*`) go."""
        if sandbox.app(app_id) is None:
            raise HTTPException(status_code=404, detail=f"no app {app_id}")
        sandbox.store.put(vouchers.GATEWAYS, app_id, {"url": request.url})
        return {"app_id": app_id, "url": request.url}

    @app.post("/control/vouchers/alipay")
    async def alipay_voucher(request: vouchers.AlipayVoucherRequest) -> dict[str, Any]:
        """Alipay gives the buyer a voucher it funds itself (`ALIPAY_FIX_VOUCHER`, `other_contribute`)."""
        if sandbox.app(request.app_id) is None:
            raise HTTPException(status_code=404, detail=f"no app {request.app_id}")
        try:
            return sandbox.vouchers.issue_alipay_voucher(request)
        except BizError as exc:
            raise HTTPException(status_code=422, detail=exc.sub_msg) from exc

    @app.post("/control/payer-codes")
    async def payer_code(request: PayerCodeRequest) -> dict[str, Any]:
        return payments.issue_payer_code(
            sandbox.store,
            sandbox.clock(),
            password_required=request.password_required,
            balance_minor=request.balance_minor,
        )

    @app.post("/control/oauth-codes")
    async def oauth_code(request: OauthCodeRequest) -> dict[str, Any]:
        if sandbox.app(request.app_id) is None:
            raise HTTPException(status_code=404, detail="unknown app_id")
        return payments.issue_oauth_code(sandbox.store, sandbox.clock(), request.app_id, request.buyer_id)

    @app.put("/control/apps/{app_id}/balance")
    async def put_balance(app_id: str, request: BalanceRequest) -> dict[str, Any]:
        transfers.set_balance(sandbox.store, app_id, request.available_minor)
        return {"app_id": app_id, "available_minor": request.available_minor}

    @app.put("/control/payees")
    async def put_payee(request: PayeeRequest) -> dict[str, Any]:
        transfers.mark_payee(sandbox.store, request.identity, exists=request.exists, name=request.name)
        return request.model_dump()

    @app.post("/control/app_pay")
    async def app_pay(request: AppPayRequest) -> dict[str, Any]:
        """What the Alipay app does with an order string: verify it and open the trade (WAIT_BUYER_PAY)."""
        try:
            params = merge_params(request.order_string, b"")
            if params.get("method") != "alipay.trade.app.pay":
                raise invalid_argument("isv.invalid-method", "order string method must be alipay.trade.app.pay")
            caller = sandbox.authenticate(params)
            trade = sandbox.trades.create(
                app_id=caller["app_id"],
                method="alipay.trade.app.pay",
                biz=sandbox.biz_content(params),
                notify_url=params.get("notify_url"),
                return_url=None,
            )
        except GatewayError as exc:
            raise HTTPException(status_code=400, detail=exc.node) from exc
        except BizError as exc:
            raise HTTPException(status_code=400, detail={"sub_code": exc.sub_code, "sub_msg": exc.sub_msg}) from exc
        return control_view(trade)

    @app.post("/control/bills/{bill_date}/discrepancies")
    async def add_discrepancy(bill_date: str, request: DiscrepancyRequest) -> dict[str, Any]:
        try:
            bill_window(bill_date)
        except BizError as exc:
            raise HTTPException(status_code=422, detail=exc.sub_msg) from exc
        if request.kind in ("change_amount", "report_success") and request.amount_minor is None:
            raise HTTPException(status_code=422, detail=f"{request.kind} needs amount_minor")
        item = request.model_dump()
        with sandbox.store.transaction():
            current = sandbox.store.get(DISCREPANCIES, bill_date) or {"items": []}
            current["items"].append(item)
            sandbox.store.put(DISCREPANCIES, bill_date, current)
        return current

    @app.get("/control/bills/{bill_date}/discrepancies")
    async def list_discrepancies(bill_date: str) -> dict[str, Any]:
        return sandbox.store.get(DISCREPANCIES, bill_date) or {"items": []}

    @app.delete("/control/bills/{bill_date}/discrepancies")
    async def clear_discrepancies(bill_date: str) -> JSONResponse:
        sandbox.store.delete(DISCREPANCIES, bill_date)
        return JSONResponse({"items": []})

    @app.get("/control/alipay_public_key")
    async def alipay_public_key() -> dict[str, str]:
        return {"alipay_public_key_pem": sandbox.platform_key.public_pem}

    # The two requests of every payment, the merchant's prepay and the payer's approve, are plain Starlette routes at
    # the head of the router: FastAPI matched them after every route registered before them and ran its per-request
    # machinery (dependencies, the answer's validation and serialisation), ~90 us of CPU per request more. The
    # middleware (faults, error handlers) is the same for them (docs/performance.md, "Seventh pass: the sandboxes").
    gateway_route = Route(GATEWAY_PATH, gateway, methods=["GET", "POST"])
    gateway_route.methods = {"GET", "POST"}  # Starlette adds HEAD to a GET route: the gateway answers it 405, as before
    app.router.routes[0:0] = [gateway_route, Route(APPROVE_PATH, approve_trade, methods=["POST"])]
    return app
