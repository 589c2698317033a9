"""WeChat Pay API v3 connector (direct merchant and service-provider mode) over httpx.

Tolerant of what the channel may vary (extra fields, unknown states, both ORDER_NOT_EXIST
spellings, 200 instead of 204 on close) and strict on what protects money: every 2xx reply must
carry a valid platform signature less than 5 minutes old, or nothing is believed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import date, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

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
from services.cashier.connectors.wechatpay import oauth as wechat_oauth
from services.cashier.connectors.wechatpay import signing
from services.cashier.connectors.wechatpay.bills import BillFormatError, parse_trade_bill
from services.cashier.connectors.wechatpay.mapping import refund_result, trade_result
from services.cashier.connectors.wechatpay.models import NOT_FOUND_CODES, WechatPayConfig
from services.cashier.connectors.wechatpay.notifications import parse_notification
from services.cashier.domain.payments import PaymentScene

CST = timezone(timedelta(hours=8))
RETRYABLE_CODES = frozenset({"SYSTEM_ERROR", "FREQUENCY_LIMITED", "STATEMENT_CREATING", "BANKERROR"})
DESCRIPTION_LENGTH_MAX = 127
REFUND_REASON_LENGTH_MAX = 80
BILL_SIZE_BYTES_MAX = 200 * 1024 * 1024
SCENE_PATHS = {
    PaymentScene.NATIVE_QR: "native",
    PaymentScene.JSAPI: "jsapi",
    PaymentScene.MINI_PROGRAM: "jsapi",
    PaymentScene.APP: "app",
    PaymentScene.H5: "h5",
}


class WechatPayConnector:
    """One instance per merchant credential set; reuse it (it holds a connection pool)."""

    channel = "wechatpay"

    def __init__(self, config: WechatPayConfig, *, http_client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._private_key = signing.load_private_key(config.merchant_private_key_pem)
        self._platform_key = (
            signing.load_public_key(config.platform_public_key_pem) if config.platform_public_key_pem else None
        )
        self._certificates: dict[str, rsa.RSAPublicKey] = {}
        self._certificate_expiry: dict[str, float] = {}  # serial → not-after (unix): the newest encrypts
        for pem in config.platform_certificates_pem:
            self._hold_certificate(pem)
        self._owns_client = http_client is None
        self._client = http_client or channel_client(
            read_timeout_seconds=config.read_timeout_seconds, connect_timeout_seconds=config.connect_timeout_seconds
        )
        self._base_url = config.base_url.rstrip("/")

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def oauth_openid(self, code: str) -> str:
        """The openid of the payer who authorised the merchant's page (`snsapi_base`), for a JSAPI payment:
        the code redeemed with the appid's AppSecret (connectors/wechatpay/oauth.py), on this connector's pool."""
        return await wechat_oauth.openid_for_code(self.config, code, self._client)

    async def __aenter__(self) -> WechatPayConnector:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ transport
    async def _request(
        self,
        method: str,
        url: str,
        payload: dict[str, Any] | None = None,
        *,
        verify: bool = True,
        wechatpay_serial: str | None = None,
    ) -> httpx.Response:
        """Sign, send, map failures onto the three base errors, verify the reply's signature."""
        if not url.startswith(("http://", "https://")):
            url = self._base_url + url
        body = (
            b"" if payload is None else json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        )
        target = httpx.URL(url)
        canonical_url = target.raw_path.decode("ascii")  # path + "?" + query, exactly as sent
        headers = {
            "Authorization": signing.build_authorization(
                mchid=self.config.signing_mchid,
                serial_no=self.config.merchant_cert_serial,
                private_key=self._private_key,
                method=method,
                canonical_url=canonical_url,
                body=body,
            ),
            "Accept": "application/json",
            "User-Agent": self.config.user_agent,
        }
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if wechatpay_serial:  # the request carries a field encrypted with this platform key (§1.4)
            headers["Wechatpay-Serial"] = wechatpay_serial
        try:
            response = await self._client.request(method, target, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise ChannelUnavailable(f"wechatpay {method} {target.path}: timeout") from exc
        except httpx.HTTPError as exc:
            raise ChannelUnavailable(f"wechatpay {method} {target.path}: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            code, message = _error_fields(response)
            raise ChannelUnavailable(f"wechatpay {method} {target.path}: HTTP {response.status_code} {code} {message}")
        if response.status_code >= 300:
            if _has_signature(response):  # the SDK skips this; we check when the headers are there
                await self._verify(response)
            code, message = _error_fields(response)
            retryable = code in RETRYABLE_CODES or response.status_code == 429
            raise ChannelError(code, message, retryable=retryable, http_status=response.status_code)
        if verify:
            await self._verify(response)
        return response

    def _hold_certificate(self, pem: str) -> None:
        serial, key = signing.load_platform_certificate(pem)
        self._certificates[serial] = key
        self._certificate_expiry[serial] = signing.certificate_not_after(pem)

    async def _verify(self, response: httpx.Response) -> None:
        """Verify a reply; a serial we do not hold means a rotated certificate: download them once more."""
        try:
            self._verify_with_known_keys(response.headers, response.content)
        except signing.UnknownPlatformSerial:
            await self.refresh_platform_certificates()
            self._verify_with_known_keys(response.headers, response.content)

    def _verify_with_known_keys(self, headers: Any, body: bytes) -> None:
        signing.verify_wechatpay_signature(
            headers,
            body,
            public_key=self._platform_key,
            public_key_id=self.config.platform_public_key_id,
            certificates=self._certificates,
            clock_skew_seconds_max=self.config.clock_skew_seconds_max,
        )

    async def encrypt_sensitive(self, text: str) -> tuple[str, str]:
        """(ciphertext, Wechatpay-Serial) for a sensitive request field: the platform public key in
        public-key mode, else the platform certificate that expires last (downloaded if none is held)."""
        if self._platform_key is not None and self.config.platform_public_key_id:
            return signing.rsa_oaep_encrypt(self._platform_key, text), self.config.platform_public_key_id
        if not self._certificates:
            await self.refresh_platform_certificates()
        serial = max(self._certificates, key=lambda s: self._certificate_expiry.get(s, 0.0))
        return signing.rsa_oaep_encrypt(self._certificates[serial], text), serial

    async def refresh_platform_certificates(self) -> list[str]:
        """GET /v3/certificates (platform-certificate mode), decrypt each certificate with the APIv3 key,
        keep those valid now, then verify the reply itself with them; returns the serials held.

        AES-GCM under the merchant's secret APIv3 key authenticates each certificate (only WeChat
        and the merchant know that key), which is why the list can be trusted before its signature.
        """
        response = await self._request("GET", "/v3/certificates?algorithm_type=RSA", verify=False)
        fetched: dict[str, str] = {}
        for item in self._json(response).get("data") or []:
            encrypted = item.get("encrypt_certificate") if isinstance(item, dict) else None
            if not isinstance(encrypted, dict) or encrypted.get("algorithm") != "AEAD_AES_256_GCM":
                continue
            pem = signing.aes_gcm_decrypt(
                self.config.apiv3_key,
                nonce=str(encrypted.get("nonce", "")),
                associated_data=str(encrypted.get("associated_data") or ""),
                ciphertext_b64=str(encrypted.get("ciphertext", "")),
            )
            try:
                serial, _key = signing.load_platform_certificate(pem.decode("ascii"))
            except ValueError:
                continue  # expired or not yet valid: listed during a rotation, never used to verify
            if serial != str(item.get("serial_no", "")).upper():
                raise InvalidSignature("platform certificate serial does not match its serial_no")
            fetched[serial] = pem.decode("ascii")
        for pem_text in fetched.values():
            self._hold_certificate(pem_text)
        self._verify_with_known_keys(response.headers, response.content)
        return sorted(self._certificates)

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError as exc:
            raise ChannelUnavailable("wechatpay replied 2xx with a body that is not JSON") from exc
        if not isinstance(data, dict):
            raise ChannelUnavailable("wechatpay replied 2xx with a JSON body that is not an object")
        return data

    def _merchant_fields(self) -> dict[str, Any]:
        config = self.config
        if config.partner:
            fields: dict[str, Any] = {
                "sp_appid": config.sp_appid,
                "sp_mchid": config.sp_mchid,
                "sub_mchid": config.sub_mchid,
            }
            if config.sub_appid:
                fields["sub_appid"] = config.sub_appid
            return fields
        return {"appid": config.appid, "mchid": config.mchid}

    def _transactions_prefix(self) -> str:
        return "/v3/pay/partner/transactions" if self.config.partner else "/v3/pay/transactions"

    def _order_query(self) -> str:
        if self.config.partner:
            return urlencode({"sp_mchid": self.config.sp_mchid, "sub_mchid": self.config.sub_mchid})
        return urlencode({"mchid": self.config.mchid})

    # ------------------------------------------------------------------ payments
    async def prepay(self, request: PrepayRequest) -> PrepayResult:
        path = SCENE_PATHS.get(request.scene)
        if path is None:
            raise ChannelError("SCENE_NOT_SUPPORTED", f"wechatpay has no {request.scene} scene")
        body: dict[str, Any] = {
            **self._merchant_fields(),
            "description": request.description[:DESCRIPTION_LENGTH_MAX],
            "out_trade_no": request.out_trade_no,
            "notify_url": request.notify_url,
            "amount": {"total": request.amount_minor, "currency": request.currency},
        }
        if request.expire_at is not None:
            body["time_expire"] = request.expire_at.astimezone(CST).isoformat(timespec="seconds")
        if request.attach:
            body["attach"] = request.attach
        if request.profit_sharing:
            body["settle_info"] = {"profit_sharing": True}
        if path == "jsapi":
            if not request.payer_openid:
                raise ChannelError("PARAM_ERROR", "payer_openid is required for JSAPI / mini-program payments")
            if self.config.partner:
                body["payer"] = {("sub_openid" if self.config.sub_appid else "sp_openid"): request.payer_openid}
            else:
                body["payer"] = {"openid": request.payer_openid}
        if path == "h5":
            if not request.payer_client_ip:
                raise ChannelError("PARAM_ERROR", "payer_client_ip is required for H5 payments")
            body["scene_info"] = {"payer_client_ip": request.payer_client_ip, "h5_info": {"type": "Wap"}}
        elif request.payer_client_ip:
            body["scene_info"] = {"payer_client_ip": request.payer_client_ip}
        data = self._json(await self._request("POST", f"{self._transactions_prefix()}/{path}", body))
        return PrepayResult(payer_action=self._payer_action(path, data, request))

    def _payer_action(self, path: str, data: dict[str, Any], request: PrepayRequest) -> dict[str, Any]:
        extras = {k: v for k, v in data.items() if k.startswith("sandbox_")}  # sandbox-only hints
        if path == "native":
            return {"type": "qr_code", "code_url": _required(data, "code_url"), **extras}
        if path == "h5":
            h5_url = _required(data, "h5_url")
            if request.return_url:
                h5_url += "&redirect_url=" + quote(request.return_url, safe="")
            return {"type": "redirect", "url": h5_url, **extras}
        prepay_id = _required(data, "prepay_id")
        if path == "jsapi":
            params = signing.jsapi_pay_params(
                appid=self.config.payer_appid, prepay_id=prepay_id, private_key=self._private_key
            )
            return {"type": "jsapi", "prepay_id": prepay_id, **params}
        partnerid = self.config.sub_mchid if self.config.partner else self.config.mchid
        assert partnerid is not None
        params = signing.app_pay_params(
            appid=self.config.payer_appid, partnerid=partnerid, prepay_id=prepay_id, private_key=self._private_key
        )
        return {"type": "app", **params}

    async def query(self, out_trade_no: str) -> TradeQueryResult:
        url = f"{self._transactions_prefix()}/out-trade-no/{quote(out_trade_no, safe='')}?{self._order_query()}"
        try:
            response = await self._request("GET", url)
        except ChannelError as exc:
            if exc.code in NOT_FOUND_CODES:
                return TradeQueryResult(status=TradeStatus.NOT_FOUND, out_trade_no=out_trade_no, detail=exc.message)
            raise
        return trade_result(self._json(response))

    async def close(self, out_trade_no: str) -> None:
        """Close an unpaid order. WeChat answers 204 with an empty (signed) body."""
        body: dict[str, Any] = (
            {"sp_mchid": self.config.sp_mchid, "sub_mchid": self.config.sub_mchid}
            if self.config.partner
            else {"mchid": self.config.mchid}
        )
        await self._request(
            "POST", f"{self._transactions_prefix()}/out-trade-no/{quote(out_trade_no, safe='')}/close", body
        )

    # ------------------------------------------------------------------ 付款码 (payer-presented code)
    async def pay_with_code(self, request: PaymentCodeRequest) -> TradeQueryResult:
        """POST .../codepay: 200 with the transaction, or 202 USERPAYING (password step) → PENDING."""
        body: dict[str, Any] = {
            **self._merchant_fields(),
            "description": request.description[:DESCRIPTION_LENGTH_MAX],
            "out_trade_no": request.out_trade_no,
            "amount": {"total": request.amount_minor, "currency": request.currency},
            "payer": {"auth_code": request.auth_code},
        }
        if request.attach:
            body["attach"] = request.attach
        scene: dict[str, Any] = {}
        if request.device_id:
            scene["device_id"] = request.device_id
        if request.store_id:
            scene["store_info"] = {"out_id": request.store_id}
        if scene:
            body["scene_info"] = scene
        response = await self._request("POST", f"{self._transactions_prefix()}/codepay", body)
        data = self._json(response)
        if response.status_code == 202 or data.get("code") == "USERPAYING":
            return TradeQueryResult(status=TradeStatus.PENDING, out_trade_no=request.out_trade_no, detail="USERPAYING")
        return trade_result(data)

    async def reverse(self, out_trade_no: str) -> None:
        """撤销 a 付款码 order at its deadline: it ends REVOKED, and a late payment goes back to the payer."""
        if self.config.partner:
            body: dict[str, Any] = {
                "sp_appid": self.config.sp_appid,
                "sp_mchid": self.config.sp_mchid,
                "sub_mchid": self.config.sub_mchid,
            }
            if self.config.sub_appid:
                body["sub_appid"] = self.config.sub_appid
        else:
            body = {"appid": self.config.appid, "mchid": self.config.mchid}
        await self._request(
            "POST", f"{self._transactions_prefix()}/out-trade-no/{quote(out_trade_no, safe='')}/reverse", body
        )

    # ------------------------------------------------------------------ refunds
    async def refund(self, request: RefundRequest) -> RefundResult:
        body: dict[str, Any] = {
            "out_trade_no": request.out_trade_no,
            "out_refund_no": request.out_refund_no,
            "amount": {"refund": request.refund_minor, "total": request.total_minor, "currency": request.currency},
        }
        if self.config.partner:
            body = {"sub_mchid": self.config.sub_mchid, **body}
        if request.reason:
            body["reason"] = request.reason[:REFUND_REASON_LENGTH_MAX]
        if request.notify_url:
            body["notify_url"] = request.notify_url
        return refund_result(self._json(await self._request("POST", "/v3/refund/domestic/refunds", body)))

    async def query_refund(self, out_refund_no: str, out_trade_no: str) -> RefundResult:
        url = f"/v3/refund/domestic/refunds/{quote(out_refund_no, safe='')}"
        if self.config.partner:
            url += "?" + urlencode({"sub_mchid": self.config.sub_mchid})
        try:
            response = await self._request("GET", url)
        except ChannelError as exc:
            if exc.code in NOT_FOUND_CODES:
                return RefundResult(
                    status=RefundStatus.NOT_FOUND, out_refund_no=out_refund_no, out_trade_no=out_trade_no
                )
            raise
        return refund_result(self._json(response))

    # ------------------------------------------------------------------ notifications
    def parse_notification(self, headers: dict[str, str], body: bytes) -> Notification:
        """Synchronous, so it cannot download certificates: a callback signed by a certificate not yet
        held is refused (WeChat retries it) until the next API reply or refresh_platform_certificates()."""
        return parse_notification(
            headers,
            body,
            public_key=self._platform_key,
            public_key_id=self.config.platform_public_key_id,
            certificates=self._certificates,
            apiv3_key=self.config.apiv3_key,
            clock_skew_seconds_max=self.config.clock_skew_seconds_max,
        )

    # ------------------------------------------------------------------ bills
    async def download_bill(self, bill_date: date) -> Bill:
        """Trade bill (ALL) for one day. A day without trades (NO_STATEMENT_EXIST) is an empty bill;
        a bill not generated yet (STATEMENT_CREATING) is a retryable ChannelError."""
        query: dict[str, str] = {"bill_date": bill_date.isoformat(), "bill_type": "ALL"}
        if self.config.bill_gzip:
            query["tar_type"] = "GZIP"
        if self.config.partner and self.config.sub_mchid:
            query["sub_mchid"] = self.config.sub_mchid
        try:
            step1 = self._json(await self._request("GET", "/v3/bill/tradebill?" + urlencode(query)))
        except ChannelError as exc:
            if exc.code == "NO_STATEMENT_EXIST":
                return Bill(bill_date=bill_date, lines=[])
            raise
        download_url = _required(step1, "download_url")
        # The download reply is not signed (wechatpay-go FAQ); integrity comes from the SHA-1 below.
        response = await self._request("GET", download_url, verify=False)
        content = response.content
        if len(content) > BILL_SIZE_BYTES_MAX:
            raise ChannelUnavailable("bill file too large")
        if content[:2] == b"\x1f\x8b":
            try:
                content = gzip.decompress(content)
            except (OSError, EOFError) as exc:
                raise ChannelUnavailable("bill file is not valid gzip") from exc
        digest = hashlib.sha1(content).hexdigest()
        expected = str(step1.get("hash_value", "")).lower()
        if step1.get("hash_type", "SHA1").upper() == "SHA1" and expected and digest != expected:
            raise InvalidSignature("bill file SHA-1 does not match hash_value")
        try:
            return parse_trade_bill(content, bill_date, raw_sha1=digest)
        except (BillFormatError, UnicodeDecodeError, KeyError) as exc:
            raise ChannelUnavailable(f"bill file could not be parsed: {exc}") from exc


def _has_signature(response: httpx.Response) -> bool:
    return "Wechatpay-Signature" in response.headers


def _error_fields(response: httpx.Response) -> tuple[str, str]:
    try:
        data = response.json()
    except ValueError:
        return f"HTTP_{response.status_code}", response.text[:200]
    if not isinstance(data, dict):
        return f"HTTP_{response.status_code}", response.text[:200]
    return str(data.get("code") or f"HTTP_{response.status_code}"), str(data.get("message") or "")


def _required(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise ChannelUnavailable(f"wechatpay reply lacks {name}")
    return value
