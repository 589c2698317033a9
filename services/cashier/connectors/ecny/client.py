"""e-CNY acquiring-bank connector (Juhe's model protocol, docs/protocols/ecny.md) over httpx.

* create (`POST /v1/orders`): `PaymentScene.NATIVE_QR` → a QR code the payer scans with the e-CNY wallet
  app; `PaymentScene.H5` → a deep link that opens the wallet app (with an https fallback page);
* query, close, refund (partial, by `out_refund_no`), refund query, signed notifications, daily bill.

Every answer must carry a valid SM2 signature from the bank's key and a fresh timestamp before any
field is believed. Error mapping: transport errors, timeouts, 5xx → ChannelUnavailable; a bad
signature → InvalidSignature; a signed 4xx → ChannelError(code), `SYSTEM_BUSY` retryable.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import httpx

from services.cashier.connectors.base import (
    Bill,
    ChannelError,
    ChannelUnavailable,
    InvalidSignature,
    Notification,
    PrepayRequest,
    PrepayResult,
    RefundRequest,
    RefundResult,
    RefundStatus,
    TradeQueryResult,
    TradeStatus,
)
from services.cashier.connectors.ecny import signing
from services.cashier.connectors.ecny.bills import BillFormatError, parse_bill
from services.cashier.connectors.ecny.models import HEADER_MERCHANT, SUPPORTED_CURRENCY, EcnyConfig
from services.cashier.connectors.ecny.notifications import notification_from_body, order_result, refund_result
from services.cashier.connectors.http import channel_client
from services.cashier.domain.payments import PaymentScene

RESPONSE_BODY_MAX_BYTES = 32 * 1024 * 1024
NOT_FOUND_CODES = frozenset({"ORDER_NOT_FOUND", "REFUND_NOT_FOUND"})
RETRYABLE_CODES = frozenset({"SYSTEM_BUSY"})
_SCENES = {PaymentScene.NATIVE_QR: "QR", PaymentScene.H5: "H5"}


class EcnyConnector:
    """The e-CNY channel for one merchant at its acquiring bank."""

    channel = "ecny"

    def __init__(self, config: EcnyConfig, *, http_client: httpx.AsyncClient | None = None) -> None:
        self._config = config
        self._owns_client = http_client is None
        self._http = http_client or channel_client(
            read_timeout_seconds=config.read_timeout_seconds, connect_timeout_seconds=config.connect_timeout_seconds
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.aclose()

    @property
    def _sm4_key(self) -> str:
        return self._config.sm4_key_hex.get_secret_value()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """One signed call; returns (status, verified raw body) for 2xx and signed 4xx answers."""
        raw = b"" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = signing.sign_request(
            self._config.merchant_private_key_hex.get_secret_value(),
            self._config.merchant_public_key_hex,
            method,
            path,
            raw,
        )
        headers[HEADER_MERCHANT] = self._config.merchant_id
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = await self._http.request(
                method, self._config.base_url.rstrip("/") + path, content=raw, headers=headers
            )
        except httpx.HTTPError as exc:
            raise ChannelUnavailable(f"ecny {method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise ChannelUnavailable(f"ecny {method} {path}: HTTP {response.status_code}")
        if len(response.content) > RESPONSE_BODY_MAX_BYTES:
            raise ChannelUnavailable(f"ecny {method} {path}: answer too large")
        if not signing.verify_message(
            self._config.bank_public_key_hex,
            response.headers,
            response.content,
            skew_seconds_max=self._config.clock_skew_seconds_max,
        ):
            raise InvalidSignature(f"ecny {method} {path}: bank signature check failed")
        return response.status_code, response.content

    async def _json(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, allow_not_found: bool = False
    ) -> dict[str, Any] | None:
        status, raw = await self._call(method, path, body)
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            raise ChannelUnavailable(f"ecny {path}: answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise ChannelUnavailable(f"ecny {path}: answer is not an object")
        if status >= 400:
            code = str(answer.get("code", f"HTTP_{status}"))
            if allow_not_found and code in NOT_FOUND_CODES:
                return None
            raise ChannelError(
                code, str(answer.get("message", ""))[:300], retryable=code in RETRYABLE_CODES, http_status=status
            )
        return answer

    async def prepay(self, request: PrepayRequest) -> PrepayResult:
        scene = _SCENES.get(request.scene)
        if scene is None:
            raise ChannelError("SCENE_NOT_SUPPORTED", f"ecny has no {request.scene} flow")
        if request.currency != SUPPORTED_CURRENCY:
            raise ChannelError("CURRENCY_NOT_SUPPORTED", f"e-CNY is CNY only, not {request.currency}")
        if request.amount_minor <= 0:
            raise ChannelError("INVALID_AMOUNT", "amount must be positive fen")
        body: dict[str, Any] = {
            "out_trade_no": request.out_trade_no,
            "amount_minor": request.amount_minor,
            "currency": "CNY",
            "description": request.description[:128],
            "scene": scene,
            "notify_url": request.notify_url,
            "expire_seconds": self._config.order_expire_seconds,
        }
        if request.return_url:
            body["return_url"] = request.return_url
        if request.attach:
            body["attach"] = request.attach[:256]
        answer = await self._json("POST", "/v1/orders", body)
        assert answer is not None
        if scene == "QR":
            action = {"type": "qr_code", "qr_code": str(answer.get("qr_code", ""))}
        else:
            action = {
                "type": "redirect",
                "method": "GET",
                "url": str(answer.get("h5_url", "")),
                "deep_link": str(answer.get("deep_link", "")),
            }
        return PrepayResult(payer_action=action, channel_trade_no=str(answer.get("order_no") or "") or None)

    async def query(self, out_trade_no: str) -> TradeQueryResult:
        answer = await self._json("GET", f"/v1/orders/{out_trade_no}", allow_not_found=True)
        if answer is None:
            return TradeQueryResult(status=TradeStatus.NOT_FOUND, out_trade_no=out_trade_no)
        return order_result(answer, self._sm4_key)

    async def close(self, out_trade_no: str) -> None:
        await self._json("POST", f"/v1/orders/{out_trade_no}/close", {})

    async def refund(self, request: RefundRequest) -> RefundResult:
        body: dict[str, Any] = {
            "out_trade_no": request.out_trade_no,
            "out_refund_no": request.out_refund_no,
            "amount_minor": request.refund_minor,
            "currency": request.currency,
        }
        if request.notify_url:
            body["notify_url"] = request.notify_url
        if request.reason:
            body["reason"] = request.reason[:128]
        answer = await self._json("POST", "/v1/refunds", body)
        assert answer is not None
        return refund_result(answer)

    async def query_refund(self, out_refund_no: str, out_trade_no: str) -> RefundResult:
        answer = await self._json("GET", f"/v1/refunds/{out_refund_no}", allow_not_found=True)
        if answer is None:
            return RefundResult(status=RefundStatus.NOT_FOUND, out_refund_no=out_refund_no, out_trade_no=out_trade_no)
        return refund_result(answer)

    def parse_notification(self, headers: dict[str, str], body: bytes) -> Notification:
        if not signing.verify_message(
            self._config.bank_public_key_hex, headers, body, skew_seconds_max=self._config.clock_skew_seconds_max
        ):
            raise InvalidSignature("ecny notification signature check failed")
        return notification_from_body(body, self._config.merchant_id, self._sm4_key)

    async def download_bill(self, bill_date: date) -> Bill:
        status, raw = await self._call("GET", f"/v1/bills/{bill_date.isoformat()}")
        if status >= 400:
            try:
                code = str(json.loads(raw).get("code", f"HTTP_{status}"))
            except (ValueError, AttributeError):
                code = f"HTTP_{status}"
            raise ChannelError(code, f"ecny bill {bill_date}", http_status=status)
        try:
            return parse_bill(raw, bill_date)
        except BillFormatError as exc:
            raise ChannelUnavailable(f"ecny bill: unreadable ({exc})") from exc
