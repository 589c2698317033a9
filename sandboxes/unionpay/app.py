"""create_app(settings) → the UnionPay ACP 5.1.0 sandbox: gateway endpoints, pay page, control API.

Gateway (form POSTs, signed by the merchant; answers `k=v&…`, not URL-encoded, signed with the
sandbox's signing certificate carried in `signPubKeyCert`):
  /gateway/api/frontTransReq.do   consume (web 07 / mobile 08) → 303 to the card page /pay/consume/<tn>
  /gateway/api/appTransReq.do     consume for the app → `tn`
  /gateway/api/backTransReq.do    refund 04, revoke 31, encryption key update 95
  /gateway/api/queryTrans.do      query 00 (origRespCode)
  /gateway/api/fileTransRequest.do  settlement file 76 (fileContent = Base64(zlib(zip)))
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Literal
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from sandboxes.common import bills as injected
from sandboxes.common.control import build_common_router
from sandboxes.common.faults import FaultMiddleware, FaultSettings
from sandboxes.common.notify import NotificationDispatcher
from sandboxes.common.paths import sandbox_data_dir
from sandboxes.common.runner import NATIVE_TELEMETRY_OFF, dispatching_lifespan
from sandboxes.common.store import DocumentStore
from sandboxes.unionpay import bills, crypto, pages
from sandboxes.unionpay.certificates import SandboxPki
from sandboxes.unionpay.sandbox import CREATED, SMS_CODE, TEST_CARDS, UnionPay, UnionPayRefusal, beijing_now
from sandboxes.unionpay.settings import NOTIFY_SCHEDULE_SECONDS, UnionPaySettings

BODY_MAX_BYTES = 64 * 1024
ECHO_FIELDS = (
    "version",
    "encoding",
    "signMethod",
    "merId",
    "orderId",
    "txnTime",
    "txnType",
    "txnSubType",
    "bizType",
    "accessType",
    "reqReserved",
)
OK = {"respCode": "00", "respMsg": "成功[0000000]"}


class MerchantRequest(BaseModel):
    mer_id: str | None = Field(default=None, pattern=r"^[0-9A-Za-z]{15}$")


class DiscrepancyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["drop_line", "change_amount", "report_success"]
    out_trade_no: str
    out_refund_no: str | None = None  # aim at that refund/revoke line instead of the consume line
    amount_minor: int | None = Field(default=None, ge=1)
    mer_id: str | None = None  # None: every merchant's file of that day


class PayRequest(BaseModel):
    card_no: str = "6216261000000000018"


def _kv(fields: dict[str, str]) -> Response:
    return PlainTextResponse(crypto.kv(fields), media_type="text/plain;charset=UTF-8")


def _system_error() -> Response:
    """Fault mode `fail`: UnionPay's unsigned 'communication timeout, query later' answer."""
    return _kv({"respCode": "03", "respMsg": "交易通讯超时，请发起查询交易"})


def _settle_day(mmdd: str) -> date:
    """The latest date (Beijing) not after today whose MMDD is `mmdd`."""
    today = beijing_now().date()
    for back in range(0, 366):
        day = today - timedelta(days=back)
        if f"{day:%m%d}" == mmdd:
            return day
    raise UnionPayRefusal("30", "settleDate 格式错误 (MMDD)")


def create_app(settings: UnionPaySettings | None = None) -> FastAPI:
    settings = settings or UnionPaySettings.from_env()
    data_dir = sandbox_data_dir("unionpay", settings.data_dir)
    store = DocumentStore(data_dir / "store.sqlite3")
    pki = SandboxPki.load_or_create(data_dir / "pki", production_cn=settings.production_cn)
    faults = FaultSettings()
    dispatcher = NotificationDispatcher(
        schedule_seconds=NOTIFY_SCHEDULE_SECONDS,
        faults=faults,
        is_acknowledged=lambda r: r.status_code == 200,
        scale=settings.notify_scale,
        timeout_seconds=settings.notify_timeout_seconds,
    )
    unionpay = UnionPay(settings, store, pki, dispatcher)

    app = FastAPI(
        title="UnionPay ACP 5.1.0 sandbox",
        lifespan=dispatching_lifespan(dispatcher, store),
        telemetry=NATIVE_TELEMETRY_OFF,
    )
    app.state.unionpay = unionpay
    app.include_router(build_common_router(channel="unionpay", faults=faults, dispatcher=dispatcher))
    app.add_middleware(FaultMiddleware, faults=faults, error_response=_system_error)

    async def form(request: Request) -> dict[str, str]:
        raw = await request.body()
        if len(raw) > BODY_MAX_BYTES:
            raise UnionPayRefusal("30", "报文过长")
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError as exc:
            raise UnionPayRefusal("30", "报文编码错误 (UTF-8)") from exc
        return dict(pairs)

    def refusal(fields: dict[str, str], exc: UnionPayRefusal) -> Response:
        """Refusals echo the request's ids; signed when the merchant is known (else unsigned, like 11)."""
        echo = {k: fields[k] for k in ECHO_FIELDS if fields.get(k)}
        answer = {**echo, "respCode": exc.code, "respMsg": exc.message}
        if exc.code == "11" or unionpay.store.get("merchants", fields.get("merId", "")) is None:
            return _kv(answer)
        return _kv(unionpay.signed(answer))

    @app.post("/gateway/api/frontTransReq.do")
    async def front_trans(request: Request) -> Response:
        fields = await form(request)
        try:
            mer_id = unionpay.authenticate(fields)
            tn = unionpay.create_consume(mer_id, fields, app=False)
        except UnionPayRefusal as exc:
            return HTMLResponse(pages.error_page(f"{exc.code} {exc.message}"), status_code=200)
        return RedirectResponse(f"/pay/consume/{tn}", status_code=303)

    @app.post("/gateway/api/appTransReq.do")
    async def app_trans(request: Request) -> Response:
        fields = await form(request)
        try:
            mer_id = unionpay.authenticate(fields)
            tn = unionpay.create_consume(mer_id, fields, app=True)
        except UnionPayRefusal as exc:
            return refusal(fields, exc)
        echo = {k: fields[k] for k in ECHO_FIELDS if fields.get(k)}
        return _kv(unionpay.signed({**echo, **OK, "tn": tn}))

    @app.post("/gateway/api/queryTrans.do")
    async def query_trans(request: Request) -> Response:
        fields = await form(request)
        try:
            mer_id = unionpay.authenticate(fields)
            return _kv(unionpay.signed(unionpay.query(mer_id, fields)))
        except UnionPayRefusal as exc:
            return refusal(fields, exc)

    @app.post("/gateway/api/backTransReq.do")
    async def back_trans(request: Request) -> Response:
        fields = await form(request)
        try:
            mer_id = unionpay.authenticate(fields)
            echo = {k: fields[k] for k in ECHO_FIELDS if fields.get(k)}
            if fields.get("txnType") == "95":
                if fields.get("certType") != "01":
                    raise UnionPayRefusal("30", "certType 必须为 01")
                return _kv(unionpay.signed({**echo, **OK, "certType": "01", "encryptPubKeyCert": pki.encrypt.pem}))
            if fields.get("txnType") not in ("04", "31"):
                raise UnionPayRefusal("30", "txnType 不支持")
            txn = unionpay.back_return(mer_id, fields)
            return _kv(
                unionpay.signed(
                    {
                        **echo,
                        **OK,
                        "queryId": txn["query_id"],
                        "origQryId": txn["orig_query_id"],
                        "txnAmt": str(txn["amount"]),
                    }
                )
            )
        except UnionPayRefusal as exc:
            return refusal(fields, exc)

    @app.post("/gateway/api/fileTransRequest.do")
    async def file_trans(request: Request) -> Response:
        fields = await form(request)
        try:
            mer_id = unionpay.authenticate(fields)
            if fields.get("txnType") != "76" or fields.get("fileType") != "00":
                raise UnionPayRefusal("30", "txnType/fileType 错误")
            day = _settle_day(fields.get("settleDate", ""))
            name, content = bills.settlement_file(unionpay, mer_id, day)
            return _kv(
                unionpay.signed(
                    {
                        "version": "5.1.0",
                        "encoding": "UTF-8",
                        "signMethod": "01",
                        "merId": mer_id,
                        "txnType": "76",
                        "txnSubType": "01",
                        "bizType": "000000",
                        "respCode": "00",
                        "respMsg": "成功[0000000]",
                        "settleDate": fields["settleDate"],
                        "fileType": "00",
                        "fileName": name,
                        "fileContent": content,
                    }
                )
            )
        except UnionPayRefusal as exc:
            return refusal(fields, exc)

    # ---------------------------------------------------------------- the payer's pages
    @app.get("/pay/consume/{tn}", response_class=HTMLResponse)
    async def consume_page(tn: str) -> Response:
        txn = unionpay.by_tn(tn)
        if txn is None:
            return HTMLResponse(pages.error_page("no such order"), status_code=404)
        if txn["status"] != CREATED:
            return HTMLResponse(pages.result_page(txn, None, {}))
        return HTMLResponse(pages.consume_page(txn))

    @app.post("/pay/consume/{tn}", response_class=HTMLResponse)
    async def consume_submit(tn: str, request: Request) -> Response:
        txn = unionpay.by_tn(tn)
        if txn is None:
            return HTMLResponse(pages.error_page("no such order"), status_code=404)
        if txn["status"] != CREATED:
            return HTMLResponse(pages.result_page(txn, None, {}))
        data = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        card_no, expiry, cvn2 = data.get("card_no", "").replace(" ", ""), data.get("expiry", ""), data.get("cvn2", "")
        error = None
        if card_no not in TEST_CARDS:
            error = "卡号不存在 (not a test card)"
        elif len(expiry) != 4 or not expiry.isdigit() or not 1 <= int(expiry[:2]) <= 12:
            error = "有效期格式错误 (MMYY)"
        elif len(cvn2) != 3 or not cvn2.isdigit():
            error = "CVN2 格式错误"
        elif data.get("sms_code") != SMS_CODE:
            error = "短信验证码错误 (SMS code)"
        if error:
            return HTMLResponse(pages.consume_page(txn, error), status_code=400)
        paid = unionpay.pay(txn["mer_id"], txn["order_id"], card_no)
        front = unionpay.notification_fields(paid) if paid["status"] != "unknown" else {}
        return HTMLResponse(pages.result_page(paid, paid.get("front_url") if front else None, front))

    # ---------------------------------------------------------------- control (unsigned)
    @app.post("/control/merchants")
    async def register_merchant(body: MerchantRequest) -> dict[str, Any]:
        return unionpay.register_merchant(body.mer_id)

    @app.get("/control/certificates")
    async def certificates() -> dict[str, Any]:
        return {
            "root_cert_pem": pki.root.pem,
            "middle_cert_pem": pki.middle.pem,
            "sign_cert_pem": pki.sign.pem,
            "encrypt_cert_pem": pki.encrypt.pem,
            "validate_cn_name": settings.production_cn,
        }

    @app.get("/control/orders/{mer_id}/{order_id}")
    async def get_order(mer_id: str, order_id: str) -> Response:
        txn = unionpay.get(mer_id, order_id)
        if txn is None:
            return PlainTextResponse("no such order", status_code=404)
        return JSONResponse(unionpay.view(txn))

    @app.post("/control/orders/{mer_id}/{order_id}/pay")
    async def pay_order(mer_id: str, order_id: str, body: PayRequest) -> dict[str, Any]:
        """What the payer does on the card page, without a browser (approve: a success card; decline:
        6216261000000000026; unknown: 6216261000000000034)."""
        if body.card_no not in TEST_CARDS:
            raise UnionPayRefusal("30", "not a test card")
        return unionpay.view(unionpay.pay(mer_id, order_id, body.card_no))

    @app.post("/control/orders/{mer_id}/{order_id}/resolve")
    async def resolve(mer_id: str, order_id: str) -> dict[str, Any]:
        """End an unknown outcome now: it becomes a success and is notified."""
        return unionpay.view(unionpay.resolve_unknown(mer_id, order_id, force=True))

    @app.post("/control/bills/{bill_date}/discrepancies")
    async def add_discrepancy(bill_date: date, body: DiscrepancyRequest) -> dict[str, Any]:
        """Inject a difference into that day's settlement file (for reconciliation tests)."""
        if body.kind in ("change_amount", "report_success") and body.amount_minor is None:
            raise UnionPayRefusal("30", f"{body.kind} needs amount_minor")
        return injected.add_discrepancy(unionpay.store, bill_date, body.model_dump())

    @app.get("/control/bills/{bill_date}/discrepancies")
    async def list_discrepancies(bill_date: date) -> dict[str, Any]:
        return {"items": injected.discrepancies(unionpay.store, bill_date)}

    @app.delete("/control/bills/{bill_date}/discrepancies")
    async def clear_discrepancies(bill_date: date) -> dict[str, Any]:
        injected.clear_discrepancies(unionpay.store, bill_date)
        return {"items": []}

    @app.exception_handler(UnionPayRefusal)
    async def on_refusal(request: Request, exc: UnionPayRefusal) -> Response:
        return PlainTextResponse(f"{exc.code} {exc.message}", status_code=409)

    @app.exception_handler(KeyError)
    async def on_missing(request: Request, exc: KeyError) -> Response:
        return PlainTextResponse(f"no such order {exc}", status_code=404)

    return app
