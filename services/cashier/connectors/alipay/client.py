"""Alipay OpenAPI v2 (RSA2, public-key mode) connector over httpx.AsyncClient.

Every server-side call is a signed form POST to the gateway; every answer is checked against the
Alipay public key over the raw text of its `<method>_response` node before any field is believed.
Browser and app flows (page, wap, app pay) have no server call: the connector returns the signed
parameters for the browser or the Alipay app to submit.

Error mapping (what the cashier sees):
* transport errors, timeouts, non-200 HTTP, bodies without the expected node → ChannelUnavailable;
* a response whose signature does not verify, or a success (10000) without a signature → InvalidSignature;
* code 20000, `*SYSTEM_ERROR`, `isp.*` sub-codes → ChannelError(retryable=True);
* any other non-10000 code → ChannelError(code=sub_code or code, retryable=False).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from services.cashier.connectors.alipay import certificates
from services.cashier.connectors.alipay.bills import BillFormatError, parse_bill_zip
from services.cashier.connectors.alipay.models import (
    SUPPORTED_CURRENCY,
    AlipayConfig,
    AmountError,
    fen_to_yuan,
    format_beijing,
    map_trade_status,
    parse_beijing,
    response_yuan_to_fen,
    voucher_discounts,
)
from services.cashier.connectors.alipay.notifications import (
    parse_notification_body,
    payment_from_params,
    verify_params,
)
from services.cashier.connectors.alipay.signing import (
    SIGN_TYPE,
    ResponseFormatError,
    extract_node_text,
    response_node_name,
    rsa2_verify,
    sign_request_params,
)
from services.cashier.connectors.base import (
    Bill,
    ChannelError,
    ChannelUnavailable,
    InvalidSignature,
    Notification,
    PaymentCodeRequest,
    PrepayRequest,
    PrepayResult,
    RefundRequest,
    RefundResult,
    RefundStatus,
    TradeQueryResult,
    TradeStatus,
)
from services.cashier.connectors.http import channel_client
from services.cashier.domain.payments import PaymentScene

CODE_SUCCESS = "10000"
CODE_SERVICE_UNAVAILABLE = "20000"
SUB_TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
SUB_BILL_NOT_EXIST = "isp.bill_not_exist"
ERROR_NODE = "error_response"
RESPONSE_BODY_MAX_BYTES = 1024 * 1024
SUBJECT_MAX_CHARS = 256

METHOD_PRECREATE = "alipay.trade.precreate"
METHOD_PAGE_PAY = "alipay.trade.page.pay"
METHOD_WAP_PAY = "alipay.trade.wap.pay"
METHOD_APP_PAY = "alipay.trade.app.pay"
METHOD_QUERY = "alipay.trade.query"
METHOD_CLOSE = "alipay.trade.close"
METHOD_REFUND = "alipay.trade.refund"
METHOD_REFUND_QUERY = "alipay.trade.fastpay.refund.query"
METHOD_BILL_URL = "alipay.data.dataservice.bill.downloadurl.query"
METHOD_BARCODE_PAY = "alipay.trade.pay"
METHOD_CANCEL = "alipay.trade.cancel"
METHOD_CREATE = "alipay.trade.create"
METHOD_OAUTH_TOKEN = "alipay.system.oauth.token"
CODE_PAYING = "10003"  # trade.pay: order created, the payer must confirm (password step)

_PRODUCT_CODES = {
    PaymentScene.NATIVE_QR: "FACE_TO_FACE_PAYMENT",
    PaymentScene.PAGE: "FAST_INSTANT_TRADE_PAY",
    PaymentScene.H5: "QUICK_WAP_WAY",
    PaymentScene.APP: "QUICK_MSECURITY_PAY",
    PaymentScene.JSAPI: "JSAPI_PAY",  # alipay.trade.create for a buyer_id from the OAuth (payer_openid)
    PaymentScene.MINI_PROGRAM: "JSAPI_PAY",
}


def _is_retryable(code: str, sub_code: str) -> bool:
    return (
        code == CODE_SERVICE_UNAVAILABLE
        or sub_code.endswith("SYSTEM_ERROR")
        or sub_code.startswith("isp.")
        or sub_code.startswith("aop.isp.")
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AlipayConnector:
    """The Alipay channel for one app_id. Share one instance (and its connection pool) per credential set."""

    channel = "alipay"

    def __init__(
        self,
        config: AlipayConfig,
        *,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._config = config
        self._clock = clock
        self._cert_sns: dict[str, str] = {}
        if config.certificate_mode:
            assert config.app_cert_pem and config.alipay_cert_pem and config.alipay_root_cert_pem
            self._cert_sns = {
                "app_cert_sn": certificates.app_cert_sn(config.app_cert_pem),
                "alipay_root_cert_sn": certificates.root_cert_sn(config.alipay_root_cert_pem),
            }
            self._alipay_cert_sn = certificates.alipay_public_key_pem(config.alipay_cert_pem)[1]
        self._owns_client = http_client is None
        self._http = http_client or channel_client(
            read_timeout_seconds=config.read_timeout_seconds, connect_timeout_seconds=config.connect_timeout_seconds
        )

    @property
    def config(self) -> AlipayConfig:
        return self._config

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.aclose()

    # ------------------------------------------------------------------ request building

    def _private_key_pem(self) -> str:
        return self._config.app_private_key_pem.get_secret_value()

    def _signed_params(
        self,
        method: str,
        biz: dict[str, Any] | None,
        *,
        notify_url: str | None = None,
        return_url: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """Common parameters + biz_content (None: none, e.g. oauth.token's grant_type/code are common
        parameters, `extra`), signed (docs/protocols/alipay.md §1, §2)."""
        params: dict[str, str | None] = {
            "app_id": self._config.app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": SIGN_TYPE,
            "timestamp": format_beijing(self._clock()),
            "version": "1.0",
            "notify_url": notify_url,
            "return_url": return_url,
            "app_auth_token": self._config.app_auth_token,
            "biz_content": None if biz is None else json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
            **self._cert_sns,
            **(extra or {}),
        }
        return sign_request_params(params, self._private_key_pem())

    async def _call(
        self,
        method: str,
        biz: dict[str, Any] | None,
        *,
        notify_url: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST one signed request; return the verified response node (any code)."""
        params = self._signed_params(method, biz, notify_url=notify_url, extra=extra)
        try:
            response = await self._http.post(
                self._config.gateway_url,
                content=urlencode(params).encode("ascii"),
                headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
            )
        except httpx.HTTPError as exc:
            raise ChannelUnavailable(f"alipay {method}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise ChannelUnavailable(f"alipay {method}: HTTP {response.status_code}")
        if len(response.content) > RESPONSE_BODY_MAX_BYTES:
            raise ChannelUnavailable(f"alipay {method}: response too large")
        return self._verify_response(method, response.content.decode(response.encoding or "utf-8", "replace"))

    def _verify_response(self, method: str, body: str) -> dict[str, Any]:
        """Locate the node, check the signature over its raw text, and parse it.

        Gateway-level refusals (bad signature, missing parameter, unavailable: codes 20000/4000x
        except 40004) are often unsigned, like Alipay's own SDK accepts; a success or business answer
        (10000, 40004) without a valid signature is refused, since those change what the cashier does.
        """
        try:
            node_text = extract_node_text(body, response_node_name(method))
            if node_text is None:
                node_text = extract_node_text(body, ERROR_NODE)
            document = json.loads(body, parse_float=str)
        except (ResponseFormatError, ValueError) as exc:
            raise ChannelUnavailable(f"alipay {method}: unreadable response ({exc})") from exc
        if node_text is None or not isinstance(document, dict):
            raise ChannelUnavailable(f"alipay {method}: response has no {response_node_name(method)} node")
        node = json.loads(node_text, parse_float=str)
        sign = document.get("sign")
        code = str(node.get("code", ""))
        if self._cert_sns and isinstance(sign, str) and sign:
            named = document.get("alipay_cert_sn")
            if named != self._alipay_cert_sn:  # Alipay rotated its certificate, or a forgery: trust neither
                raise InvalidSignature(
                    f"alipay {method}: reply signed under alipay_cert_sn {named!r}, configured {self._alipay_cert_sn}"
                )
        if isinstance(sign, str) and sign:
            if not rsa2_verify(node_text, sign, self._config.alipay_public_key_pem):
                raise InvalidSignature(f"alipay {method}: response signature check failed")
        elif code in (CODE_SUCCESS, "40004", "10003", ""):  # "": oauth.token's success carries no code
            raise InvalidSignature(f"alipay {method}: unsigned {code} response")
        return dict(node)

    @staticmethod
    def _raise_for_code(method: str, node: dict[str, Any]) -> None:
        code = str(node.get("code", ""))
        if code == CODE_SUCCESS:
            return
        sub_code = str(node.get("sub_code") or "")
        message = str(node.get("sub_msg") or node.get("msg") or "")
        raise ChannelError(
            sub_code or code or "UNKNOWN",
            f"{method}: {message}",
            retryable=_is_retryable(code, sub_code),
            http_status=200,
        )

    @staticmethod
    def _not_exist(node: dict[str, Any]) -> bool:
        return str(node.get("code")) == "40004" and str(node.get("sub_code", "")).endswith(SUB_TRADE_NOT_EXIST)

    # ------------------------------------------------------------------ operations

    async def prepay(self, request: PrepayRequest) -> PrepayResult:
        """Create the trade (QR) or build the signed browser/app parameters (page, h5, app)."""
        product_code = _PRODUCT_CODES.get(request.scene)
        if product_code is None:
            raise ChannelError("SCENE_NOT_SUPPORTED", f"alipay has no {request.scene} flow in this connector")
        biz: dict[str, Any] = {
            "out_trade_no": request.out_trade_no,
            "total_amount": self._yuan(request.amount_minor, request.currency),
            "subject": request.description[:SUBJECT_MAX_CHARS] or request.out_trade_no,
            "product_code": product_code,
        }
        if request.expire_at is not None:
            biz["time_expire"] = format_beijing(request.expire_at)
        if request.profit_sharing:
            biz["extend_params"] = {"royalty_freeze": "true"}
        if request.scene is PaymentScene.NATIVE_QR:
            node = await self._call(METHOD_PRECREATE, biz, notify_url=request.notify_url)
            self._raise_for_code(METHOD_PRECREATE, node)
            qr_code = node.get("qr_code")
            if not qr_code:
                raise ChannelUnavailable("alipay precreate: success without qr_code")
            return PrepayResult(payer_action={"type": "qr_code", "qr_code": str(qr_code)})
        if request.scene in (PaymentScene.JSAPI, PaymentScene.MINI_PROGRAM):
            return await self._create_jsapi(request, biz)
        if request.attach:
            # Alipay hands passback_params back URL-encoded; encode on the way out as its docs ask.
            biz["passback_params"] = quote(request.attach, safe="")
        if request.scene is PaymentScene.APP:
            params = self._signed_params(METHOD_APP_PAY, biz, notify_url=request.notify_url)
            return PrepayResult(payer_action={"type": "app", "order_string": urlencode(params)})
        method = METHOD_PAGE_PAY if request.scene is PaymentScene.PAGE else METHOD_WAP_PAY
        params = self._signed_params(method, biz, notify_url=request.notify_url, return_url=request.return_url)
        separator = "&" if "?" in self._config.gateway_url else "?"
        return PrepayResult(
            payer_action={
                "type": "redirect",
                "method": "GET",
                "url": self._config.gateway_url + separator + urlencode(params),
                "form": {
                    "action": self._config.gateway_url + separator + "charset=utf-8",
                    "method": "POST",
                    "fields": params,
                },
            }
        )

    async def query(self, out_trade_no: str) -> TradeQueryResult:
        # voucher_detail_list only when asked for (docs/protocols/alipay.md §12): the channel-funded discounts
        node = await self._call(METHOD_QUERY, {"out_trade_no": out_trade_no, "query_options": ["voucher_detail_list"]})
        if self._not_exist(node):
            # Precreated trades do not exist at Alipay until the buyer scans the QR code.
            return TradeQueryResult(status=TradeStatus.NOT_FOUND, out_trade_no=out_trade_no)
        self._raise_for_code(METHOD_QUERY, node)
        trade_status = str(node.get("trade_status") or "")
        paid_at = parse_beijing(str(node.get("send_pay_date") or ""))
        return TradeQueryResult(
            status=map_trade_status(trade_status, paid=paid_at is not None),
            out_trade_no=str(node.get("out_trade_no") or out_trade_no),
            channel_trade_no=str(node["trade_no"]) if node.get("trade_no") else None,
            amount_minor=response_yuan_to_fen(node.get("total_amount")),
            paid_at=paid_at,
            detail=trade_status or None,
            channel_discounts=voucher_discounts(node.get("voucher_detail_list")),
        )

    async def _create_jsapi(self, request: PrepayRequest, biz: dict[str, Any]) -> PrepayResult:
        """alipay.trade.create: the trade for a known buyer (`payer_openid` carries the buyer_id 2088… or
        the buyer_open_id from `oauth_user_id`); the page / mini-program then calls my.tradePay(trade_no)."""
        if not request.payer_openid:
            raise ChannelError("INVALID_PARAMETER", "JSAPI / mini-program payments need the buyer (payer_openid)")
        buyer_key = "buyer_id" if request.payer_openid.startswith("2088") else "buyer_open_id"
        node = await self._call(METHOD_CREATE, {**biz, buyer_key: request.payer_openid}, notify_url=request.notify_url)
        self._raise_for_code(METHOD_CREATE, node)
        trade_no = node.get("trade_no")
        if not trade_no:
            raise ChannelUnavailable("alipay trade.create: success without trade_no")
        return PrepayResult(payer_action={"type": "jsapi", "trade_no": str(trade_no)}, channel_trade_no=str(trade_no))

    async def oauth_user_id(self, auth_code: str) -> str:
        """alipay.system.oauth.token (grant_type=authorization_code): the buyer's user_id for JSAPI."""
        params = {"grant_type": "authorization_code", "code": auth_code}
        node = await self._call(METHOD_OAUTH_TOKEN, None, extra=params)
        if node.get("user_id"):
            return str(node["user_id"])
        self._raise_for_code(METHOD_OAUTH_TOKEN, node)
        raise ChannelUnavailable("alipay oauth.token: answer without user_id")

    async def pay_with_code(self, request: PaymentCodeRequest) -> TradeQueryResult:
        """alipay.trade.pay (scene bar_code): 10000 paid → SUCCEEDED; 10003 → PENDING (password step)."""
        biz: dict[str, Any] = {
            "out_trade_no": request.out_trade_no,
            "scene": "bar_code",
            "auth_code": request.auth_code,
            "subject": request.description[:SUBJECT_MAX_CHARS],
            "total_amount": self._yuan(request.amount_minor, request.currency),
        }
        if request.store_id:
            biz["store_id"] = request.store_id
        if request.device_id:
            biz["terminal_id"] = request.device_id
        if request.attach:
            biz["body"] = request.attach
        node = await self._call(METHOD_BARCODE_PAY, biz, notify_url=request.notify_url)
        code = str(node.get("code", ""))
        if code == CODE_PAYING:
            return TradeQueryResult(
                status=TradeStatus.PENDING,
                out_trade_no=request.out_trade_no,
                channel_trade_no=str(node["trade_no"]) if node.get("trade_no") else None,
                detail="WAIT_BUYER_PAY (10003)",
            )
        self._raise_for_code(METHOD_BARCODE_PAY, node)
        paid_at = parse_beijing(str(node.get("gmt_payment") or ""))
        return TradeQueryResult(
            status=TradeStatus.SUCCEEDED,
            out_trade_no=str(node.get("out_trade_no") or request.out_trade_no),
            channel_trade_no=str(node["trade_no"]) if node.get("trade_no") else None,
            amount_minor=response_yuan_to_fen(node.get("total_amount")),
            paid_at=paid_at,
            detail="TRADE_SUCCESS",
        )

    async def cancel(self, out_trade_no: str) -> str:
        """alipay.trade.cancel: closes an unpaid trade, refunds a paid one; returns Alipay's `action`
        (`close` | `refund`). Used at a 付款码 deadline and by the precreate poll-then-cancel flow."""
        node = await self._call(METHOD_CANCEL, {"out_trade_no": out_trade_no})
        self._raise_for_code(METHOD_CANCEL, node)
        return str(node.get("action") or "")

    async def close(self, out_trade_no: str) -> None:
        """Close an unpaid trade.

        Raises ChannelError("ACQ.TRADE_NOT_EXIST") for a precreated QR trade nobody scanned yet:
        Alipay has nothing to close then, and the QR code stays payable until its time_expire, so the
        cashier must not assume the buyer can no longer pay (query again after time_expire).
        ACQ.TRADE_STATUS_ERROR means the trade is already paid or closed: query to find out which.
        """
        node = await self._call(METHOD_CLOSE, {"out_trade_no": out_trade_no})
        self._raise_for_code(METHOD_CLOSE, node)

    async def refund(self, request: RefundRequest) -> RefundResult:
        """Refund idempotently by out_request_no (= out_refund_no).

        fund_change=Y is a completed refund. fund_change=N means no money moved in *this* call (a
        repeat of an earlier refund, or still processing); it is reported PENDING so the cashier
        confirms through query_refund, as Alipay's own guidance says.
        """
        biz: dict[str, Any] = {
            "out_trade_no": request.out_trade_no,
            "refund_amount": self._yuan(request.refund_minor, request.currency),
            "out_request_no": request.out_refund_no,
            "query_options": ["gmt_refund_pay"],
        }
        if request.reason:
            biz["refund_reason"] = request.reason[:256]
        node = await self._call(METHOD_REFUND, biz)
        self._raise_for_code(METHOD_REFUND, node)
        done = str(node.get("fund_change", "")).upper() == "Y"
        return RefundResult(
            status=RefundStatus.SUCCEEDED if done else RefundStatus.PENDING,
            out_refund_no=request.out_refund_no,
            out_trade_no=str(node.get("out_trade_no") or request.out_trade_no),
            channel_refund_no=None,  # Alipay has no refund id; out_request_no is the key
            refund_minor=request.refund_minor,
            succeeded_at=parse_beijing(str(node.get("gmt_refund_pay") or "")) if done else None,
        )

    async def query_refund(self, out_refund_no: str, out_trade_no: str) -> RefundResult:
        """fastpay.refund.query: REFUND_SUCCESS → SUCCEEDED; 10000 without refund fields → NOT_FOUND.

        Older gateways omit refund_status; like jeepay, a returned refund_amount then means success.
        """
        biz = {
            "out_trade_no": out_trade_no,
            "out_request_no": out_refund_no,
            "query_options": ["gmt_refund_pay"],
        }
        node = await self._call(METHOD_REFUND_QUERY, biz)
        if self._not_exist(node):
            return RefundResult(status=RefundStatus.NOT_FOUND, out_refund_no=out_refund_no, out_trade_no=out_trade_no)
        self._raise_for_code(METHOD_REFUND_QUERY, node)
        refund_minor = response_yuan_to_fen(node.get("refund_amount"))
        refund_status = str(node.get("refund_status") or "")
        if refund_status == "REFUND_SUCCESS" or (not refund_status and refund_minor):
            status = RefundStatus.SUCCEEDED
        elif refund_status:
            status = RefundStatus.PENDING
        else:
            status = RefundStatus.NOT_FOUND
        return RefundResult(
            status=status,
            out_refund_no=out_refund_no,
            out_trade_no=str(node.get("out_trade_no") or out_trade_no),
            channel_refund_no=None,
            refund_minor=refund_minor if status is not RefundStatus.NOT_FOUND else None,
            succeeded_at=parse_beijing(str(node.get("gmt_refund_pay") or ""))
            if status is RefundStatus.SUCCEEDED
            else None,
        )

    def parse_notification(self, headers: dict[str, str], body: bytes) -> Notification:
        return parse_notification_body(body, self._config)

    def parse_return(self, params: dict[str, str]) -> TradeQueryResult:
        """Verify the signed query of a page/wap return redirect (same rules as a notification).

        A return redirect is a hint for the browser flow only; the cashier still waits for the
        notification or its own query before marking the payment succeeded.
        """
        verify_params(params, self._config)
        return payment_from_params(params)

    async def download_bill(self, bill_date: date) -> Bill:
        """bill.downloadurl.query, then a plain unsigned GET of the zip (the URL is short-lived)."""
        biz = {"bill_type": "trade", "bill_date": bill_date.isoformat()}
        node = await self._call(METHOD_BILL_URL, biz)
        self._raise_for_code(METHOD_BILL_URL, node)
        url = node.get("bill_download_url")
        if not url:
            raise ChannelUnavailable("alipay bill: success without bill_download_url")
        try:
            async with self._http.stream(
                "GET", str(url), timeout=self._config.bill_download_timeout_seconds, follow_redirects=True
            ) as response:
                if response.status_code != 200:
                    raise ChannelUnavailable(f"alipay bill download: HTTP {response.status_code}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self._config.bill_size_max_bytes:
                        raise ChannelUnavailable("alipay bill download: file larger than the limit")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise ChannelUnavailable(f"alipay bill download: {type(exc).__name__}: {exc}") from exc
        try:
            return parse_bill_zip(b"".join(chunks), bill_date)
        except BillFormatError as exc:
            raise ChannelUnavailable(f"alipay bill download: unreadable bill ({exc})") from exc

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _yuan(amount_minor: int, currency: str) -> str:
        if currency != SUPPORTED_CURRENCY:
            raise ChannelError("CURRENCY_NOT_SUPPORTED", f"alipay settles CNY only, not {currency}")
        try:
            return fen_to_yuan(amount_minor)
        except AmountError as exc:
            raise ChannelError("INVALID_AMOUNT", str(exc)) from exc
