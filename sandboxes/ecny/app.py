"""create_app(settings) → the e-CNY acquiring-bank sandbox (Juhe's model protocol, README.md).

Bank API (SM2-signed JSON both ways; every answer is signed by the bank key):
  POST /v1/orders, GET /v1/orders/{out_trade_no}, POST /v1/orders/{out_trade_no}/close,
  POST /v1/refunds, GET /v1/refunds/{out_refund_no}, GET /v1/bills/{yyyy-mm-dd} (CSV)
The payer's "wallet app": /pay/wallet/{order_no} (choose a wallet level 1–4, pay or decline).
"""

from __future__ import annotations

import json
from datetime import date
from html import escape
from typing import Any, Literal
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from sandboxes.common import bills as injected
from sandboxes.common.control import build_common_router
from sandboxes.common.faults import FaultMiddleware, FaultSettings
from sandboxes.common.notify import NotificationDispatcher
from sandboxes.common.paths import sandbox_data_dir
from sandboxes.common.runner import NATIVE_TELEMETRY_OFF, dispatching_lifespan
from sandboxes.common.store import DocumentStore
from sandboxes.ecny import bills
from sandboxes.ecny.sandbox import WALLET_LIMITS_FEN, BankError, EcnyBank
from sandboxes.ecny.settings import NOTIFY_SCHEDULE_SECONDS, EcnySettings

BODY_MAX_BYTES = 64 * 1024
_NO = r"^[0-9A-Za-z_-]{6,64}$"


class OrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out_trade_no: str = Field(pattern=_NO)
    amount_minor: StrictInt = Field(gt=0, le=10**12)
    currency: Literal["CNY"]
    description: str = Field(min_length=1, max_length=128)
    scene: Literal["QR", "H5"]
    notify_url: str = Field(max_length=512)
    return_url: str | None = Field(default=None, max_length=512)
    attach: str | None = Field(default=None, max_length=256)
    expire_seconds: StrictInt = Field(default=900, ge=60, le=86400)


class RefundBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out_trade_no: str = Field(pattern=_NO)
    out_refund_no: str = Field(pattern=_NO)
    amount_minor: StrictInt = Field(gt=0, le=10**12)
    currency: Literal["CNY"]
    notify_url: str | None = Field(default=None, max_length=512)
    reason: str | None = Field(default=None, max_length=128)


class MerchantRequest(BaseModel):
    merchant_id: str | None = Field(default=None, pattern=r"^[0-9A-Za-z]{1,32}$")
    merchant_public_key_hex: str | None = Field(default=None, pattern=r"^(04)?[0-9a-fA-F]{128}$")


class DiscrepancyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["drop_line", "change_amount", "report_success"]
    out_trade_no: str
    out_refund_no: str | None = None  # aim at that refund line instead of the order line
    amount_minor: int | None = Field(default=None, ge=1)
    merchant_id: str | None = None  # None: every merchant's bill of that day


class PayBody(BaseModel):
    wallet_level: int = Field(default=4, ge=1, le=4)


def _yuan(fen: int | None) -> str:
    return "不限 unlimited" if fen is None else f"¥{fen // 100:,}"


def wallet_page(order: dict[str, Any], error: str | None = None) -> str:
    """The wallet app: the amount, a choice of wallet level with its limits, Pay and Decline."""
    options = "".join(
        f'<label><input type="radio" name="wallet_level" value="{level}"{" checked" if level == 4 else ""}> '
        f"{level} 类钱包 — 单笔 {_yuan(s)} / 日累计 {_yuan(d)} / 余额 {_yuan(b)}</label><br>"
        for level, (s, d, b) in WALLET_LIMITS_FEN.items()
    )
    amount = int(order["amount_minor"])
    status = escape(str(order["status"]))
    form = ""
    if order["status"] == "PENDING":
        form = (
            f'<form method="post" action="/pay/wallet/{escape(order["order_no"])}">{options}'
            '<button type="submit" name="action" value="pay" id="pay">付款 Pay</button> '
            '<button type="submit" name="action" value="decline" id="decline">拒绝 Decline</button>'
            "</form>"
        )
    err = f'<p id="error" style="color:#c00">{escape(error)}</p>' if error else ""
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>数字人民币 e-CNY sandbox</title>'
        '</head><body style="font-family:sans-serif;max-width:32rem;margin:3rem auto">'
        f'<h1>数字人民币 e-CNY wallet (sandbox)</h1><p style="font-size:2rem">¥{amount // 100}.{amount % 100:02d}'
        f'</p><p>{escape(str(order.get("description") or ""))} — <span id="status">{status}</span>'
        f"{' ' + escape(str(order['failure_code'])) if order.get('failure_code') else ''}</p>{err}{form}"
        "</body></html>"
    )


def create_app(settings: EcnySettings | None = None) -> FastAPI:
    settings = settings or EcnySettings.from_env()
    store = DocumentStore(sandbox_data_dir("ecny", settings.data_dir) / "store.sqlite3")
    faults = FaultSettings()
    dispatcher = NotificationDispatcher(
        schedule_seconds=NOTIFY_SCHEDULE_SECONDS,
        faults=faults,
        is_acknowledged=lambda r: r.status_code == 200 and b"SUCCESS" in r.content,
        scale=settings.notify_scale,
    )
    bank = EcnyBank(settings, store, dispatcher)

    app = FastAPI(
        title="e-CNY acquiring bank sandbox (Juhe model)",
        lifespan=dispatching_lifespan(dispatcher, store),
        telemetry=NATIVE_TELEMETRY_OFF,
    )
    app.state.bank = bank
    app.include_router(build_common_router(channel="ecny", faults=faults, dispatcher=dispatcher))
    app.add_middleware(
        FaultMiddleware,
        faults=faults,
        error_response=lambda: Response(
            b'{"code":"SYSTEM_BUSY","message":"bank system busy"}', status_code=503, media_type="application/json"
        ),
    )

    def signed(status_code: int, body: dict[str, Any] | bytes, media_type: str = "application/json") -> Response:
        raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        return Response(raw, status_code=status_code, media_type=media_type, headers=bank.sign_headers(raw))

    @app.exception_handler(BankError)
    async def on_bank_error(request: Request, exc: BankError) -> Response:
        return signed(exc.status_code, {"code": exc.code, "message": exc.message})

    async def merchant_of(request: Request, raw: bytes) -> str:
        if len(raw) > BODY_MAX_BYTES:
            raise BankError(400, "PARAM_ERROR", "body too large")
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        headers = {k.lower(): v for k, v in request.headers.items()}
        merchant_id = headers.get("ecny-merchant-id", "")
        bank.authenticate(merchant_id, request.method, path, raw, headers)
        return merchant_id

    def parse(model: type[BaseModel], raw: bytes) -> dict[str, Any]:
        try:
            return model.model_validate_json(raw).model_dump()
        except ValidationError as exc:
            error = exc.errors()[0]
            raise BankError(400, "PARAM_ERROR", f"{'.'.join(map(str, error['loc']))}: {error['msg']}") from exc

    @app.post("/v1/orders")
    async def create_order(request: Request) -> Response:
        raw = await request.body()
        merchant_id = await merchant_of(request, raw)
        return signed(200, bank.create_order(merchant_id, parse(OrderRequest, raw), str(request.base_url)))

    @app.get("/v1/orders/{out_trade_no}")
    async def get_order(out_trade_no: str, request: Request) -> Response:
        merchant_id = await merchant_of(request, b"")
        return signed(200, bank.view(bank.get_order(merchant_id, out_trade_no)))

    @app.post("/v1/orders/{out_trade_no}/close")
    async def close_order(out_trade_no: str, request: Request) -> Response:
        merchant_id = await merchant_of(request, await request.body())
        return signed(200, bank.view(bank.close(merchant_id, out_trade_no)))

    @app.post("/v1/refunds")
    async def create_refund(request: Request) -> Response:
        raw = await request.body()
        merchant_id = await merchant_of(request, raw)
        return signed(200, bank.refund_view(bank.refund(merchant_id, parse(RefundBody, raw))))

    @app.get("/v1/refunds/{out_refund_no}")
    async def get_refund(out_refund_no: str, request: Request) -> Response:
        merchant_id = await merchant_of(request, b"")
        return signed(200, bank.refund_view(bank.get_refund(merchant_id, out_refund_no)))

    @app.get("/v1/bills/{day}")
    async def bill(day: date, request: Request) -> Response:
        merchant_id = await merchant_of(request, b"")
        return signed(200, bills.bill_csv(bank, merchant_id, day).encode(), media_type="text/csv")

    # ---------------------------------------------------------------- the wallet app
    @app.get("/pay/wallet/{order_no}", response_class=HTMLResponse)
    async def wallet(order_no: str) -> Response:
        order = bank.by_order_no(order_no)
        if order is None:
            return HTMLResponse("<h1>no such order</h1>", status_code=404)
        return HTMLResponse(wallet_page(order))

    @app.post("/pay/wallet/{order_no}", response_class=HTMLResponse)
    async def wallet_submit(order_no: str, request: Request) -> Response:
        order = bank.by_order_no(order_no)
        if order is None:
            return HTMLResponse("<h1>no such order</h1>", status_code=404)
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        try:
            if form.get("action") == "decline":
                order = bank.decline(order)
            else:
                level = form.get("wallet_level", "")
                order = bank.pay(order, int(level) if level.isdigit() else 0)
        except BankError as exc:
            return HTMLResponse(wallet_page(order, exc.message), status_code=exc.status_code)
        return HTMLResponse(wallet_page(order))

    # ---------------------------------------------------------------- control (unsigned)
    @app.post("/control/merchants")
    async def register(body: MerchantRequest) -> dict[str, Any]:
        return bank.register_merchant(body.merchant_id, body.merchant_public_key_hex)

    @app.get("/control/bank-public-key")
    async def bank_key() -> dict[str, str]:
        return {"bank_public_key_hex": bank.public_hex}

    @app.get("/control/wallet-levels")
    async def levels() -> dict[str, Any]:
        return {
            str(level): {"per_payment_minor": s, "daily_minor": d, "balance_minor": b}
            for level, (s, d, b) in WALLET_LIMITS_FEN.items()
        }

    def control_order(merchant_id: str, out_trade_no: str) -> dict[str, Any]:
        return bank.get_order(merchant_id, out_trade_no)

    @app.post("/control/orders/{merchant_id}/{out_trade_no}/pay")
    async def control_pay(merchant_id: str, out_trade_no: str, body: PayBody) -> dict[str, Any]:
        return bank.view(bank.pay(control_order(merchant_id, out_trade_no), body.wallet_level))

    @app.post("/control/orders/{merchant_id}/{out_trade_no}/decline")
    async def control_decline(merchant_id: str, out_trade_no: str) -> dict[str, Any]:
        return bank.view(bank.decline(control_order(merchant_id, out_trade_no)))

    @app.post("/control/bills/{bill_date}/discrepancies")
    async def add_discrepancy(bill_date: date, body: DiscrepancyRequest) -> dict[str, Any]:
        """Inject a difference into that day's bill (for reconciliation tests)."""
        if body.kind in ("change_amount", "report_success") and body.amount_minor is None:
            raise BankError(422, "PARAM_ERROR", f"{body.kind} needs amount_minor")
        return injected.add_discrepancy(store, bill_date, body.model_dump())

    @app.get("/control/bills/{bill_date}/discrepancies")
    async def list_discrepancies(bill_date: date) -> dict[str, Any]:
        return {"items": injected.discrepancies(store, bill_date)}

    @app.delete("/control/bills/{bill_date}/discrepancies")
    async def clear_discrepancies(bill_date: date) -> dict[str, Any]:
        injected.clear_discrepancies(store, bill_date)
        return {"items": []}

    return app
