"""The sandbox's channel logic: merchants, orders, refunds, notifications and bills.

Strict on purpose (docs/protocols/wechatpay.md: "the connector is tolerant and the sandbox strict"): every
request must be signed correctly, bodies may carry only documented fields, amounts must be
integers, and state changes follow WeChat's state machine
(NOTPAY → SUCCESS | PAYERROR | CLOSED; SUCCESS → REFUND after a refund succeeds).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gzip
import hashlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sandboxes.common.faults import FaultSettings
from sandboxes.common.keys import KeyPair, generate_rsa_key_pair, load_or_create_rsa_key, load_public_key_pem
from sandboxes.common.notify import NotificationDispatcher, NotificationJob
from sandboxes.common.paths import sandbox_data_dir
from sandboxes.common.store import Document, DocumentStore
from sandboxes.wechatpay import bills, crypto
from sandboxes.wechatpay.certificates import PlatformCertificates
from sandboxes.wechatpay.settings import NOTIFY_SCHEDULE_SECONDS, SandboxSettings

CHANNEL = "wechatpay"
CST = timezone(timedelta(hours=8))
OUT_TRADE_NO_PATTERN = re.compile(r"[0-9A-Za-z_\-|*]{6,32}")
OUT_REFUND_NO_PATTERN = re.compile(r"[0-9A-Za-z_\-|*@]{1,64}")
TRADE_TYPES = {"native": "NATIVE", "jsapi": "JSAPI", "app": "APP", "h5": "MWEB"}
TRADE_STATE_DESC = {
    "SUCCESS": "支付成功",
    "NOTPAY": "订单未支付",
    "CLOSED": "订单已关闭",
    "PAYERROR": "支付失败，其他原因",
    "REFUND": "转入退款",
    "USERPAYING": "需要用户输入支付密码",
    "REVOKED": "已撤销",
}
CODEPAY_FIELDS = {
    "description",
    "out_trade_no",
    "attach",
    "goods_tag",
    "support_fapiao",
    "amount",
    "payer",
    "scene_info",
    "settle_info",
    "detail",
}
# 付款码: 18 digits starting 10..15 (the payer's WeChat shows it; it changes every minute).
AUTH_CODE_PATTERN = re.compile(r"1[0-5][0-9]{16}")
AUTH_CODE_TTL_SECONDS = 60.0
DIRECT_FIELDS = {"appid", "mchid"}
PARTNER_FIELDS = {"sp_appid", "sp_mchid", "sub_appid", "sub_mchid"}
ORDER_FIELDS = {
    "description",
    "out_trade_no",
    "time_expire",
    "attach",
    "notify_url",
    "goods_tag",
    "support_fapiao",
    "amount",
    "payer",
    "detail",
    "scene_info",
    "settle_info",
}
REFUND_FIELDS = {
    "sub_mchid",
    "transaction_id",
    "out_trade_no",
    "out_refund_no",
    "reason",
    "notify_url",
    "funds_account",
    "amount",
    "goods_detail",
}
BILL_TOKEN_TTL_SECONDS = 3600
AMOUNT_FEN_MAX = 10**12
PUBLIC_KEY_MODE, CERTIFICATE_MODE = "public_key", "certificate"
# Which platform key signs the reply to the request being served (set by `authenticate`): WeChat
# signs with the key the request's `Wechatpay-Serial` names, else by the merchant's verification mode.
_reply_mode: contextvars.ContextVar[str] = contextvars.ContextVar("wechatpay_reply_mode", default=PUBLIC_KEY_MODE)


class WxError(Exception):
    """A WeChat-style error reply: HTTP status + `{"code","message"}`."""

    def __init__(self, status: int, code: str, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail


class ControlError(Exception):
    """An error of the sandbox's own control API (not WeChat-shaped)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def now_cst() -> datetime:
    return datetime.now(CST).replace(microsecond=0)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(CST).isoformat(timespec="seconds")


def _digits(count: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(count))


def _require_str(body: dict[str, Any], name: str, *, max_length: int = 256) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise WxError(400, "PARAM_ERROR", f"{name} is required and must be a string of 1..{max_length} chars")
    return value


def _optional_str(body: dict[str, Any], name: str, *, max_length: int = 256) -> str | None:
    if body.get(name) is None:
        return None
    return _require_str(body, name, max_length=max_length)


def _require_int(container: dict[str, Any], name: str, where: str) -> int:
    value = container.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= AMOUNT_FEN_MAX:
        raise WxError(400, "PARAM_ERROR", f"{where}.{name} must be a positive integer number of fen")
    return value


def _check_currency(container: dict[str, Any], where: str) -> str:
    currency = container.get("currency", "CNY")
    if currency != "CNY":
        raise WxError(400, "PARAM_ERROR", f"{where}.currency must be CNY")
    return "CNY"


def _check_notify_url(url: Any) -> str:
    if not isinstance(url, str) or not re.fullmatch(r"https?://[^\s?#]+", url) or len(url) > 256:
        raise WxError(400, "PARAM_ERROR", "notify_url must be an absolute http(s) URL without a query string")
    return url


def optional_time(body: dict[str, Any], name: str) -> datetime | None:
    """An RFC 3339 time field with its UTC offset (`time_expire`, `time_start`), or None when absent."""
    if body.get(name) is None:
        return None
    try:
        moment = datetime.fromisoformat(_require_str(body, name))
    except ValueError as exc:
        raise WxError(400, "PARAM_ERROR", f"{name} must be RFC 3339") from exc
    if moment.tzinfo is None:
        raise WxError(400, "PARAM_ERROR", f"{name} must carry a UTC offset")
    return moment


def check_h5_scene(scene: Any) -> None:
    """H5 (MWEB) orders, single or combined, need the payer's IP and the H5 scene type."""
    if not (
        isinstance(scene, dict)
        and scene.get("payer_client_ip")
        and isinstance(scene.get("h5_info"), dict)
        and scene["h5_info"].get("type") in ("iOS", "Android", "Wap")
    ):
        raise WxError(400, "PARAM_ERROR", "scene_info.payer_client_ip and h5_info.type are required")


class Sandbox:
    """State and behaviour of one WeChat Pay sandbox process."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        directory = sandbox_data_dir(CHANNEL, settings.data_dir)
        self.store = DocumentStore(directory / "store.sqlite3")
        self.platform_key: KeyPair = load_or_create_rsa_key(directory, "platform_private_key")
        key_id_path = directory / "platform_public_key_id.txt"
        if not key_id_path.exists():
            key_id_path.write_text("PUB_KEY_ID_01" + _digits(26), encoding="ascii")
        self.platform_key_id = key_id_path.read_text(encoding="ascii").strip()
        self.certificates = PlatformCertificates(self.store)
        self.faults = FaultSettings(seed=settings.seed)
        self.dispatcher = NotificationDispatcher(
            schedule_seconds=NOTIFY_SCHEDULE_SECONDS,
            scale=settings.notify_scale,
            faults=self.faults,
            timeout_seconds=settings.notify_timeout_seconds,
            is_acknowledged=lambda response: response.status_code in (200, 204),
        )
        self._timers: set[asyncio.TimerHandle] = set()
        self._startup_hooks: list[Callable[[], None]] = []
        # 代金券 (favor.py): the promotion_detail a payer's chosen coupon gives an order (raises if it
        # cannot be used), and marking an order's coupons used once it is paid.
        self.coupon_promotion: Callable[[Document, str, str | None], list[dict[str, Any]]] | None = None
        self.coupon_used: Callable[[Document], None] | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.dispatcher.start()
        for refund in self.store.list("refunds"):
            if refund["status"] == "PROCESSING" and refund.get("auto_due_unix") is not None:
                self._schedule_refund_success(refund["key"], refund["auto_due_unix"] - time.time())
        for hook in self._startup_hooks:
            hook()

    def on_start(self, hook: Callable[[], None]) -> None:
        """Run `hook` when the sandbox starts (inside the event loop): re-arm timers kept in the store."""
        self._startup_hooks.append(hook)

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        await self.dispatcher.stop()
        self.store.close()

    # ------------------------------------------------------------------ signing
    def signed_headers(self, body: bytes, mode: str | None = None) -> dict[str, str]:
        """Headers of a signed reply or callback; `mode` None: the mode of the request being served."""
        timestamp, nonce = str(int(time.time())), crypto.nonce_str()
        if (mode or _reply_mode.get()) == CERTIFICATE_MODE:
            certificate = self.certificates.current()
            private_key, serial = certificate.key.private_key, certificate.serial_no
        else:
            private_key, serial = self.platform_key.private_key, self.platform_key_id
        return {
            "Wechatpay-Timestamp": timestamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": crypto.sign(private_key, crypto.response_message(timestamp, nonce, body)),
            "Wechatpay-Serial": serial,
            # Real WeChat Pay sends it on every signed reply, not only on callbacks; the public
            # wechatpayv3 SDK refuses a 2xx reply without it (docs/protocols/wechatpay.md §3, §13).
            "Wechatpay-Signature-Type": crypto.SIGNATURE_TYPE,
            "Request-ID": str(uuid.uuid4()),
        }

    def authenticate(self, method: str, request_uri: bytes, body: bytes, headers: dict[str, str]) -> Document:
        """Verify the merchant's request signature over the raw bytes; return the merchant."""
        try:
            params = crypto.parse_authorization(headers.get("authorization"))
        except crypto.AuthorizationError as exc:
            raise WxError(401, "SIGN_ERROR", f"Authorization header invalid: {exc}") from exc
        merchant = self.store.get("merchants", params["mchid"])
        if merchant is None:
            raise WxError(401, "SIGN_ERROR", f"mchid {params['mchid']} is not registered in the sandbox")
        public_pem = merchant["serials"].get(params["serial_no"].upper())
        if public_pem is None:
            raise WxError(401, "SIGN_ERROR", "serial_no is not a registered merchant API certificate serial")
        if abs(time.time() - int(params["timestamp"])) >= self.settings.clock_skew_seconds_max:
            raise WxError(401, "SIGN_ERROR", "timestamp is too far from the server clock")
        message = crypto.request_message(method, request_uri, params["timestamp"], params["nonce_str"], body)
        if not crypto.verify(load_public_key_pem(public_pem), message, params["signature"]):
            raise WxError(401, "SIGN_ERROR", "signature verification failed")
        if not headers.get("user-agent"):
            raise WxError(400, "PARAM_ERROR", "User-Agent header is required")
        named = (headers.get("wechatpay-serial") or "").upper()
        if named == self.platform_key_id.upper():
            _reply_mode.set(PUBLIC_KEY_MODE)
        elif named and any(c.serial_no == named for c in self.certificates.all()):
            _reply_mode.set(CERTIFICATE_MODE)
        else:
            _reply_mode.set(merchant.get("platform_verification") or PUBLIC_KEY_MODE)
        return merchant

    def decrypt_sensitive(self, serial: str | None, ciphertext: Any, field: str) -> str:
        """A sensitive request field (§1.4): RSA-OAEP with the platform key `Wechatpay-Serial` names."""
        if not serial:
            raise WxError(400, "PARAM_ERROR", f"an encrypted {field} needs the Wechatpay-Serial header")
        if serial.upper() == self.platform_key_id.upper():
            key = self.platform_key.private_key
        else:
            matches = [c for c in self.certificates.all() if c.serial_no == serial.upper()]
            if not matches:
                raise WxError(400, "PARAM_ERROR", f"Wechatpay-Serial {serial} names no platform key")
            key = matches[0].key.private_key
        try:
            return crypto.rsa_oaep_decrypt(key, str(ciphertext))
        except ValueError as exc:
            raise WxError(400, "PARAM_ERROR", f"{field} could not be decrypted with the named key") from exc

    def certificates_view(self, merchant: Document) -> dict[str, Any]:
        """`GET /v3/certificates`: every valid platform certificate, encrypted under the APIv3 key."""
        data = []
        for certificate in self.certificates.all():
            data.append(
                {
                    "serial_no": certificate.serial_no,
                    "effective_time": rfc3339(certificate.effective_time),
                    "expire_time": rfc3339(certificate.expire_time),
                    "encrypt_certificate": crypto.encrypt_resource(
                        merchant["apiv3_key"], certificate.pem.encode("ascii"), "certificate"
                    ),
                }
            )
        return {"data": data}

    # ------------------------------------------------------------------ merchants
    def register_merchant(self, request: dict[str, Any]) -> dict[str, Any]:
        mchid = request["mchid"]
        existing = self.store.get("merchants", mchid) or {
            "mchid": mchid,
            "appids": [],
            "serials": {},
            "sub_merchants": {},
        }
        result: dict[str, Any] = {}
        serial = (request.get("merchant_cert_serial") or "").upper()
        public_pem = request.get("merchant_public_key_pem")
        if request.get("generate_key_pair"):
            pair = generate_rsa_key_pair()
            public_pem = pair.public_pem
            serial = serial or secrets.token_hex(20).upper()
            result["merchant_private_key_pem"] = pair.private_pem
        if public_pem:
            try:
                load_public_key_pem(public_pem)
            except ValueError as exc:
                raise ControlError(422, f"merchant_public_key_pem: {exc}") from exc
            if not serial:
                raise ControlError(422, "merchant_cert_serial is required with a public key")
            existing["serials"][serial] = public_pem
        if not existing["serials"]:
            raise ControlError(422, "give merchant_public_key_pem + merchant_cert_serial or generate_key_pair")
        for appid in [request.get("appid"), *(request.get("appids") or [])]:
            if appid and appid not in existing["appids"]:
                existing["appids"].append(appid)
        for sub in request.get("sub_merchants") or []:
            existing["sub_merchants"][sub["sub_mchid"]] = {"sub_appid": sub.get("sub_appid")}
        apiv3_key = request.get("apiv3_key") or existing.get("apiv3_key") or crypto.nonce_str(32)
        if len(apiv3_key.encode("ascii")) != 32:
            raise ControlError(422, "apiv3_key must be 32 ASCII characters")
        existing["apiv3_key"] = apiv3_key
        existing["platform_verification"] = (
            request.get("platform_verification") or existing.get("platform_verification") or PUBLIC_KEY_MODE
        )
        self.store.put("merchants", mchid, existing)
        return {
            **result,
            "mchid": mchid,
            "appids": existing["appids"],
            "apiv3_key": apiv3_key,
            "merchant_cert_serial": serial,
            "sub_merchants": existing["sub_merchants"],
            "platform_public_key_pem": self.platform_key.public_pem,
            "platform_public_key_id": self.platform_key_id,
            "platform_verification": existing["platform_verification"],
            "platform_certificates": self.certificates_summary(),
        }

    def certificates_summary(self) -> list[dict[str, str]]:
        """Control view: serial and PEM of each valid platform certificate (the newest signs)."""
        return [
            {"serial_no": c.serial_no, "pem": c.pem, "expire_time": rfc3339(c.expire_time)}
            for c in self.certificates.all()
        ]

    # ------------------------------------------------------------------ orders
    def _scope(self, merchant: Document, *, partner: bool, sub_mchid: str | None) -> str:
        if not partner:
            return merchant["mchid"]
        if not sub_mchid:
            raise WxError(400, "PARAM_ERROR", "sub_mchid is required in partner mode")
        if sub_mchid not in merchant["sub_merchants"]:
            raise WxError(403, "NO_AUTH", f"sub_mchid {sub_mchid} is not bound to service provider {merchant['mchid']}")
        return f"{merchant['mchid']}/{sub_mchid}"

    def create_order(
        self, merchant: Document, kind: str, body: dict[str, Any], *, partner: bool, base_url: str
    ) -> dict[str, Any]:
        if kind not in TRADE_TYPES:
            raise WxError(404, "NOT_FOUND", f"no such trade type {kind}")
        allowed = ORDER_FIELDS | (PARTNER_FIELDS if partner else DIRECT_FIELDS)
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise WxError(400, "PARAM_ERROR", f"unknown fields: {', '.join(unknown)}")
        if partner:
            sp_mchid = _require_str(body, "sp_mchid")
            sp_appid = _require_str(body, "sp_appid")
            sub_mchid = _require_str(body, "sub_mchid")
            sub_appid = _optional_str(body, "sub_appid")
            if sp_mchid != merchant["mchid"]:
                raise WxError(400, "INVALID_REQUEST", "sp_mchid does not match the signing mchid")
            if sp_appid not in merchant["appids"]:
                raise WxError(400, "APPID_MCHID_NOT_MATCH", "sp_appid is not bound to sp_mchid")
            scope = self._scope(merchant, partner=True, sub_mchid=sub_mchid)
            bound_sub_appid = merchant["sub_merchants"][sub_mchid].get("sub_appid")
            if sub_appid is not None and bound_sub_appid and sub_appid != bound_sub_appid:
                raise WxError(400, "APPID_MCHID_NOT_MATCH", "sub_appid is not bound to sub_mchid")
        else:
            appid = _require_str(body, "appid")
            if _require_str(body, "mchid") != merchant["mchid"]:
                raise WxError(400, "INVALID_REQUEST", "mchid does not match the signing mchid")
            if appid not in merchant["appids"]:
                raise WxError(400, "APPID_MCHID_NOT_MATCH", "appid is not bound to mchid")
            scope = merchant["mchid"]
        _require_str(body, "description", max_length=127)
        out_trade_no = _require_str(body, "out_trade_no", max_length=32)
        if not OUT_TRADE_NO_PATTERN.fullmatch(out_trade_no):
            raise WxError(400, "PARAM_ERROR", "out_trade_no must be 6-32 chars of [0-9A-Za-z_-|*]")
        _check_notify_url(body.get("notify_url"))
        _optional_str(body, "attach", max_length=128)
        amount = body.get("amount")
        if not isinstance(amount, dict):
            raise WxError(400, "PARAM_ERROR", "amount is required")
        total = _require_int(amount, "total", "amount")
        _check_currency(amount, "amount")
        time_expire = optional_time(body, "time_expire")
        payer = body.get("payer") or {}
        if not isinstance(payer, dict):
            raise WxError(400, "PARAM_ERROR", "payer must be an object")
        openid = None
        if kind == "jsapi":
            if partner:
                openid = payer.get("sp_openid") or payer.get("sub_openid")
                if payer.get("sub_openid") and not body.get("sub_appid"):
                    raise WxError(400, "PARAM_ERROR", "payer.sub_openid requires sub_appid")
            else:
                openid = payer.get("openid")
            if not isinstance(openid, str) or not openid:
                raise WxError(400, "PARAM_ERROR", "payer openid is required for JSAPI")
        if kind == "h5":
            check_h5_scene(body.get("scene_info"))

        fingerprint = hashlib.sha256(
            json.dumps({"kind": kind, **body}, sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest()
        key = f"{scope}:{out_trade_no}"
        order = {
            "key": key,
            "scope": scope,
            "partner": partner,
            "kind": kind,
            "trade_type": TRADE_TYPES[kind],
            "mchid": merchant["mchid"],
            "appid": body.get("sp_appid") if partner else body.get("appid"),
            "sub_mchid": body.get("sub_mchid"),
            "sub_appid": body.get("sub_appid"),
            "out_trade_no": out_trade_no,
            "description": body["description"],
            "attach": body.get("attach"),
            "notify_url": body["notify_url"],
            "total": total,
            "currency": "CNY",
            "time_expire": rfc3339(time_expire) if time_expire else None,
            "payer_openid": openid,
            "payer_is_sub": bool(partner and payer.get("sub_openid")),
            "trade_state": "NOTPAY",
            "transaction_id": None,
            "success_time": None,
            "bank_type": None,
            "create_time": rfc3339(now_cst()),
            "prepay_id": "wx" + now_cst().strftime("%d%H%M%S") + _digits(26),
            "code_token": secrets.token_urlsafe(12),
            "fingerprint": fingerprint,
            "profit_sharing": bool((body.get("settle_info") or {}).get("profit_sharing")),
        }
        with self.store.transaction():
            if not self.store.insert_if_absent("orders", key, order):
                existing = self._load_order(key)
                if existing["fingerprint"] != fingerprint:
                    raise WxError(403, "OUT_TRADE_NO_USED", "out_trade_no already used with different parameters")
                if existing["trade_state"] in ("SUCCESS", "REFUND"):
                    raise WxError(400, "ORDERPAID", "order already paid")
                if existing["trade_state"] == "CLOSED":
                    raise WxError(400, "ORDER_CLOSED", "order closed")
                order = existing
        pay_url = f"{base_url}/pay/{out_trade_no}?mchid={scope}"
        if kind == "native":
            return {"code_url": f"weixin://wxpay/bizpayurl?pr={order['code_token']}", "sandbox_pay_url": pay_url}
        if kind == "h5":
            return {"h5_url": f"{pay_url}&prepay_id={order['prepay_id']}"}
        return {"prepay_id": order["prepay_id"]}

    def _load_order(self, key: str) -> Document:
        order = self.store.get("orders", key)
        if order is None:
            raise WxError(404, self.settings.order_not_exist_code, "order does not exist")
        expire = order.get("time_expire")
        if order["trade_state"] == "NOTPAY" and expire and datetime.fromisoformat(expire) <= now_cst():
            order = self.store.update("orders", key, lambda d: {**d, "trade_state": "CLOSED"})
        return order

    def find_order(self, scope: str, *, out_trade_no: str | None = None, transaction_id: str | None = None) -> Document:
        if out_trade_no is not None:
            return self._load_order(f"{scope}:{out_trade_no}")
        link = self.store.get("transactions", transaction_id or "")
        if link is None or not link["key"].startswith(scope + ":"):
            raise WxError(404, self.settings.order_not_exist_code, "order does not exist")
        return self._load_order(link["key"])

    def transaction_view(self, order: Document) -> dict[str, Any]:
        """The §1.7 Transaction object (direct) or its partner-mode shape."""
        view: dict[str, Any] = {}
        if order["partner"]:
            view.update(sp_appid=order["appid"], sp_mchid=order["mchid"], sub_mchid=order["sub_mchid"])
            if order.get("sub_appid"):
                view["sub_appid"] = order["sub_appid"]
        else:
            view.update(appid=order["appid"], mchid=order["mchid"])
        state = order["trade_state"]
        view.update(
            out_trade_no=order["out_trade_no"],
            trade_state=state,
            trade_state_desc=TRADE_STATE_DESC[state],
            promotion_detail=order.get("promotion_detail") or [],
        )
        if order.get("attach") is not None:
            view["attach"] = order["attach"]
        amount: dict[str, Any] = {"total": order["total"], "currency": "CNY", "payer_currency": "CNY"}
        if order.get("transaction_id"):  # the payer pays the total less the channel coupons used
            amount["payer_total"] = order["total"] - sum(p["amount"] for p in order.get("promotion_detail") or [])
            view.update(
                transaction_id=order["transaction_id"],
                trade_type=order["trade_type"],
                bank_type=order["bank_type"],
                success_time=order["success_time"],
            )
            if order["partner"]:
                view["payer"] = {("sub_openid" if order["payer_is_sub"] else "sp_openid"): order["payer_openid"]}
            else:
                view["payer"] = {"openid": order["payer_openid"]}
        view["amount"] = amount
        return view

    def close_order(self, merchant: Document, out_trade_no: str, body: dict[str, Any], *, partner: bool) -> None:
        expected = {"sp_mchid", "sub_mchid"} if partner else {"mchid"}
        if set(body) != expected:
            raise WxError(400, "PARAM_ERROR", f"close body must be exactly {sorted(expected)}")
        signer = body["sp_mchid"] if partner else body["mchid"]
        if signer != merchant["mchid"]:
            raise WxError(400, "INVALID_REQUEST", "mchid does not match the signing mchid")
        scope = self._scope(merchant, partner=partner, sub_mchid=body.get("sub_mchid"))
        key = f"{scope}:{out_trade_no}"
        if self._load_order(key).get("combine_key"):
            raise WxError(
                400,
                "INVALID_REQUEST",
                "a combined (合单) sub-order is closed only by the combined close "
                "API, /v3/combine-transactions/out-trade-no/{no}/close",
            )

        def close(order: Document) -> Document:
            if order["trade_state"] in ("SUCCESS", "REFUND"):
                raise WxError(400, "ORDERPAID", "order already paid, cannot close")
            return {**order, "trade_state": "CLOSED"}

        self.store.update("orders", key, close)

    # ------------------------------------------------------------------ 付款码 (payer-presented code)
    def issue_payer_code(
        self, *, password_required: bool, balance_minor: int | None, openid: str | None, coupon_id: str | None = None
    ) -> dict[str, Any]:
        """What the payer's WeChat shows: an 18-digit code (10..15 prefix), single use, valid a minute."""
        code = f"1{secrets.randbelow(6)}" + _digits(16)
        expires = time.time() + AUTH_CODE_TTL_SECONDS
        self.store.put(
            "payer_codes",
            code,
            {
                "code": code,
                "password_required": password_required,
                "balance_minor": balance_minor,
                "expires_unix": expires,
                "openid": openid or "o" + crypto.nonce_str(27),
                "used": False,
                "coupon_id": coupon_id,
            },
        )
        return {
            "auth_code": code,
            "password_required": password_required,
            "expires_at": rfc3339(datetime.fromtimestamp(expires, CST)),
        }

    def codepay(self, merchant: Document, body: dict[str, Any], *, partner: bool) -> tuple[int, dict[str, Any]]:
        """`POST /v3/pay/transactions/codepay`: charge the scanned code now. 200 + the transaction when
        paid; 202 `USERPAYING` when the payer must enter a password (the merchant then polls the order
        and reverses it at its deadline). No callback: the merchant learns the result synchronously."""
        unknown = sorted(set(body) - CODEPAY_FIELDS - (PARTNER_FIELDS if partner else DIRECT_FIELDS))
        if unknown:
            raise WxError(400, "PARAM_ERROR", f"unknown fields: {', '.join(unknown)}")
        if partner:
            if _require_str(body, "sp_mchid") != merchant["mchid"]:
                raise WxError(400, "INVALID_REQUEST", "sp_mchid does not match the signing mchid")
            appid = _require_str(body, "sp_appid")
            scope = self._scope(merchant, partner=True, sub_mchid=_require_str(body, "sub_mchid"))
        else:
            if _require_str(body, "mchid") != merchant["mchid"]:
                raise WxError(400, "INVALID_REQUEST", "mchid does not match the signing mchid")
            appid = _require_str(body, "appid")
            scope = merchant["mchid"]
        if appid not in merchant["appids"]:
            raise WxError(400, "APPID_MCHID_NOT_MATCH", "appid is not bound to mchid")
        description = _require_str(body, "description", max_length=127)
        out_trade_no = _require_str(body, "out_trade_no", max_length=32)
        if not OUT_TRADE_NO_PATTERN.fullmatch(out_trade_no):
            raise WxError(400, "PARAM_ERROR", "out_trade_no must be 6-32 chars of [0-9A-Za-z_-|*]")
        amount = body.get("amount")
        if not isinstance(amount, dict):
            raise WxError(400, "PARAM_ERROR", "amount is required")
        total = _require_int(amount, "total", "amount")
        _check_currency(amount, "amount")
        payer = body.get("payer")
        auth_code = payer.get("auth_code") if isinstance(payer, dict) else None
        if not isinstance(auth_code, str) or not AUTH_CODE_PATTERN.fullmatch(auth_code):
            raise WxError(400, "PARAM_ERROR", "payer.auth_code must be the 18-digit code starting 10..15")
        fingerprint = hashlib.sha256(
            json.dumps({"kind": "codepay", **body}, sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest()
        key = f"{scope}:{out_trade_no}"
        with self.store.transaction():
            existing = self.store.get("orders", key)
            if existing is not None:  # a retry of the same charge answers its current state
                if existing["fingerprint"] != fingerprint:
                    raise WxError(403, "OUT_TRADE_NO_USED", "out_trade_no already used with different parameters")
                return self._codepay_answer(existing)
            code = self.store.get("payer_codes", auth_code)
            if code is None or code["used"] or code["expires_unix"] < time.time():
                raise WxError(
                    400,
                    "AUTH_CODE_INVALID",
                    "付款码无效或已过期，请刷新后重新扫码 [sandbox: code unknown, used or older than a minute]",
                )
            if code["balance_minor"] is not None and total > code["balance_minor"]:
                self.store.put("payer_codes", auth_code, {**code, "used": True})
                raise WxError(403, "NOTENOUGH", "用户余额不足")
            self.store.put("payer_codes", auth_code, {**code, "used": True})
            now = rfc3339(now_cst())
            order = {
                "key": key,
                "scope": scope,
                "partner": partner,
                "kind": "codepay",
                "trade_type": "MICROPAY",
                "mchid": merchant["mchid"],
                "appid": appid,
                "sub_mchid": body.get("sub_mchid"),
                "sub_appid": body.get("sub_appid"),
                "out_trade_no": out_trade_no,
                "description": description,
                "attach": body.get("attach"),
                "notify_url": None,
                "total": total,
                "currency": "CNY",
                "time_expire": None,
                "payer_openid": code["openid"],
                "payer_is_sub": False,
                "trade_state": "USERPAYING" if code["password_required"] else "SUCCESS",
                "transaction_id": None,
                "success_time": None,
                "bank_type": None,
                "create_time": now,
                "prepay_id": None,
                "code_token": None,
                "fingerprint": fingerprint,
                "profit_sharing": bool((body.get("settle_info") or {}).get("profit_sharing")),
                "payer_coupon_id": code.get("coupon_id"),
            }
            if not code["password_required"]:
                order.update(transaction_id="4200" + _digits(24), success_time=now, bank_type="OTHERS")
                order["promotion_detail"] = self._payer_code_promotion(order, code.get("coupon_id"), code["openid"])
                self.store.put("transactions", order["transaction_id"], {"key": key})
            self.store.put("orders", key, order)
            if order.get("promotion_detail") and self.coupon_used is not None:
                self.coupon_used(order)
        return self._codepay_answer(order)

    def _payer_code_promotion(self, order: Document, coupon_id: str | None, openid: str | None) -> list[dict[str, Any]]:
        """The promotion_detail of the 代金券 a payer code carries, when it applies to the order; WeChat
        charges the code without it otherwise (at once, or when the payer confirms with the password)."""
        if not coupon_id or self.coupon_promotion is None:
            return []
        try:
            return self.coupon_promotion(order, coupon_id, openid)
        except ControlError:
            return []

    def _codepay_answer(self, order: Document) -> tuple[int, dict[str, Any]]:
        if order["trade_state"] == "USERPAYING":
            return 202, {"code": "USERPAYING", "message": "需要用户输入支付密码"}
        if order["trade_state"] in ("SUCCESS", "REFUND"):
            return 200, self.transaction_view(order)
        raise WxError(400, "TRADE_ERROR", f"交易失败 (order is {order['trade_state']})")

    def reverse_order(self, merchant: Document, out_trade_no: str, body: dict[str, Any], *, partner: bool) -> None:
        """`POST .../out-trade-no/{no}/reverse`: a 付款码 order ends REVOKED; if it was paid, the money
        goes back to the payer (as WeChat warns). Reversing twice is harmless. Answers 204 [L]."""
        expected = {"sp_appid", "sp_mchid", "sub_mchid", "sub_appid"} if partner else {"appid", "mchid"}
        if set(body) - expected or (partner and not body.get("sub_mchid")):
            raise WxError(400, "PARAM_ERROR", f"reverse body: {sorted(expected)}")
        if body.get("sp_mchid" if partner else "mchid") != merchant["mchid"]:
            raise WxError(400, "INVALID_REQUEST", "mchid does not match the signing mchid")
        key = f"{self._scope(merchant, partner=partner, sub_mchid=body.get('sub_mchid'))}:{out_trade_no}"
        order = self._load_order(key)
        if order["kind"] != "codepay":
            raise WxError(400, "INVALID_REQUEST", "only 付款码 (codepay) orders can be reversed; close the others")

        def revoke(current: Document) -> Document:
            if current["trade_state"] == "REFUND":
                raise WxError(400, "INVALID_REQUEST", "the order has refunds; it cannot be reversed")
            return {**current, "trade_state": "REVOKED" if current["trade_state"] != "CLOSED" else "CLOSED"}

        self.store.update("orders", key, revoke)

    # ------------------------------------------------------------------ control: pay / decline
    def find_orders_for_control(self, out_trade_no: str, scope: str | None) -> Document:
        matches = [
            o for o in self.store.find("orders", "out_trade_no", out_trade_no) if scope is None or o["scope"] == scope
        ]
        if not matches:
            raise ControlError(404, f"no order {out_trade_no}")
        if len(matches) > 1:
            raise ControlError(409, f"{out_trade_no} exists for several merchants; pass ?mchid=<scope>")
        return self._load_order(matches[0]["key"])

    def approve_order(
        self,
        out_trade_no: str,
        scope: str | None,
        payer_openid: str | None,
        bank_type: str | None,
        coupon_id: str | None = None,
    ) -> Document:
        """The payer pays (optionally with one of its 代金券, `coupon_id`, which the payment's
        promotion_detail then shows and which is used once the order is paid)."""
        order = self.find_orders_for_control(out_trade_no, scope)
        if order.get("combine_key"):
            raise ControlError(
                409,
                "a combined (合单) sub-order is paid with its combined order: "
                "/control/combine-orders/{combine_out_trade_no}/approve",
            )

        def pay(current: Document) -> Document:  # USERPAYING: the payer entered the password (付款码)
            if current["trade_state"] not in ("NOTPAY", "USERPAYING"):
                raise ControlError(409, f"order is {current['trade_state']}, not NOTPAY")
            openid = current["payer_openid"] or payer_openid
            if coupon_id:  # the payer picks the coupon now: it must apply (else 409, nothing changes)
                if self.coupon_promotion is None:
                    raise ControlError(409, "coupons are not enabled in this sandbox")
                promotion = self.coupon_promotion(current, coupon_id, openid)
            else:  # a 付款码 confirmed by password: its coupon, as at once, only if it still applies
                promotion = self._payer_code_promotion(current, current.get("payer_coupon_id"), openid)
            return {
                **current,
                "trade_state": "SUCCESS",
                "transaction_id": "4200" + _digits(24),
                "success_time": rfc3339(now_cst()),
                "bank_type": bank_type or "OTHERS",
                "payer_openid": openid or "o" + crypto.nonce_str(27),
                "promotion_detail": promotion,
            }

        with self.store.transaction():  # the coupon is used with the payment, or neither happens
            paid = self.store.update("orders", order["key"], pay)
            if paid["promotion_detail"] and self.coupon_used is not None:
                self.coupon_used(paid)
        self.store.put("transactions", paid["transaction_id"], {"key": paid["key"]})
        merchant = self.store.get("merchants", paid["mchid"]) or {}
        if paid["notify_url"]:  # 付款码 orders have none: their result is synchronous
            self._notify(
                merchant,
                url=paid["notify_url"],
                event_type="TRANSACTION.SUCCESS",
                summary="支付成功",
                original_type="transaction",
                resource=self.transaction_view(paid),
                subject=paid["out_trade_no"],
            )
        return paid

    def decline_order(self, out_trade_no: str, scope: str | None) -> Document:
        order = self.find_orders_for_control(out_trade_no, scope)
        if order.get("combine_key"):
            raise ControlError(409, "a combined (合单) sub-order is declined with its combined order")

        def decline(current: Document) -> Document:
            if current["trade_state"] not in ("NOTPAY", "USERPAYING"):
                raise ControlError(409, f"order is {current['trade_state']}, not NOTPAY")
            return {**current, "trade_state": "PAYERROR"}

        return self.store.update("orders", order["key"], decline)

    # ------------------------------------------------------------------ refunds
    def create_refund(self, merchant: Document, body: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(body) - REFUND_FIELDS)
        if unknown:
            raise WxError(400, "PARAM_ERROR", f"unknown fields: {', '.join(unknown)}")
        partner = bool(body.get("sub_mchid"))
        scope = self._scope(merchant, partner=partner, sub_mchid=body.get("sub_mchid"))
        out_refund_no = _require_str(body, "out_refund_no", max_length=64)
        if not OUT_REFUND_NO_PATTERN.fullmatch(out_refund_no):
            raise WxError(400, "PARAM_ERROR", "out_refund_no must be 1-64 chars of [0-9A-Za-z_-|*@]")
        if bool(body.get("out_trade_no")) == bool(body.get("transaction_id")):
            raise WxError(400, "PARAM_ERROR", "give exactly one of out_trade_no and transaction_id")
        if body.get("notify_url") is not None:
            _check_notify_url(body["notify_url"])
        amount = body.get("amount")
        if not isinstance(amount, dict):
            raise WxError(400, "PARAM_ERROR", "amount is required")
        refund_fen = _require_int(amount, "refund", "amount")
        total_fen = _require_int(amount, "total", "amount")
        _check_currency(amount, "amount")
        try:
            order = self.find_order(
                scope, out_trade_no=body.get("out_trade_no"), transaction_id=body.get("transaction_id")
            )
        except WxError as exc:
            # the refund API names a missing order RESOURCE_NOT_EXISTS (docs/protocols/wechatpay.md §9)
            raise WxError(404, "RESOURCE_NOT_EXISTS", "订单不存在") from exc
        if order["trade_state"] not in ("SUCCESS", "REFUND"):  # unpaid: nothing to refund, as if absent
            raise WxError(404, "RESOURCE_NOT_EXISTS", f"订单不存在 (order is {order['trade_state']})")
        if total_fen != order["total"]:
            raise WxError(400, "PARAM_ERROR", "amount.total does not match the order amount")
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        key = f"{scope}:{out_refund_no}"
        with self.store.transaction():
            existing = self.store.get("refunds", key)
            if existing is not None:
                if existing["fingerprint"] != fingerprint:
                    raise WxError(400, "INVALID_REQUEST", "out_refund_no already used with different parameters")
                return self.refund_view(existing)
            refunded = sum(
                r["refund"]
                for r in self.store.list("refunds")
                if r["order_key"] == order["key"] and r["status"] in ("PROCESSING", "SUCCESS")
            )
            if refund_fen > order["total"] - refunded:
                raise WxError(400, "INVALID_REQUEST", "refund amount exceeds the refundable amount of the order")
            auto = self.settings.refund_auto_success_seconds
            refund = {
                "key": key,
                "scope": scope,
                "order_key": order["key"],
                "mchid": merchant["mchid"],
                "sub_mchid": body.get("sub_mchid"),
                "refund_id": "50" + _digits(28),
                "out_refund_no": out_refund_no,
                "out_trade_no": order["out_trade_no"],
                "transaction_id": order["transaction_id"],
                "refund": refund_fen,
                "refunded_before": refunded,  # the coupons' shares are cumulative floors (_refund_split)
                "total": order["total"],
                "status": "PROCESSING",
                "create_time": rfc3339(now_cst()),
                "success_time": None,
                "reason": body.get("reason"),
                "notify_url": body.get("notify_url") or order["notify_url"],
                "funds_account": body.get("funds_account") or "AVAILABLE",
                "fingerprint": fingerprint,
                "auto_due_unix": None if auto is None else time.time() + auto,
            }
            self.store.put("refunds", key, refund)
        if auto is not None:
            self._schedule_refund_success(key, auto)
        return self.refund_view(refund)

    def apply_abnormal_refund(
        self, merchant: Document, refund_id: str, body: dict[str, Any], serial: str | None
    ) -> dict[str, Any]:
        """`POST /v3/refund/domestic/refunds/{refund_id}/apply-abnormal-refund`: an ABNORMAL refund (the
        payer's card or change could not take it) is sent again, to a bank card the payer names
        (USER_BANK_CARD: bank_type + RSA-encrypted bank_account and real_name) or to the merchant's own
        account (MERCHANT_BANK_CARD); it is PROCESSING again and ends like any refund."""
        unknown = sorted(set(body) - {"sub_mchid", "out_refund_no", "type", "bank_type", "bank_account", "real_name"})
        if unknown:
            raise WxError(400, "PARAM_ERROR", f"unknown fields: {', '.join(unknown)}")
        scope = self._scope(merchant, partner=bool(body.get("sub_mchid")), sub_mchid=body.get("sub_mchid"))
        key = f"{scope}:{_require_str(body, 'out_refund_no', max_length=64)}"
        refund = self.store.get("refunds", key)
        if refund is None or refund["refund_id"] != refund_id:
            raise WxError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        kind = body.get("type")
        if kind == "USER_BANK_CARD":
            if not body.get("bank_type"):
                raise WxError(400, "PARAM_ERROR", "bank_type is required for USER_BANK_CARD")
            for name in ("bank_account", "real_name"):
                if not body.get(name):
                    raise WxError(400, "PARAM_ERROR", f"{name} (encrypted) is required for USER_BANK_CARD")
                self.decrypt_sensitive(serial, body[name], name)
            channel, account = "OTHER_BANKCARD", f"{body['bank_type']} 用户银行卡"
        elif kind == "MERCHANT_BANK_CARD":
            channel, account = "OTHER_BANKCARD", "交易商户银行账户"
        else:
            raise WxError(400, "PARAM_ERROR", "type must be USER_BANK_CARD or MERCHANT_BANK_CARD")

        def reapply(current: Document) -> Document:
            if current["status"] != "ABNORMAL":
                raise WxError(400, "INVALID_REQUEST", f"退款状态不是异常 (refund is {current['status']})")
            return {**current, "status": "PROCESSING", "channel": channel, "user_received_account": account}

        updated = self.store.update("refunds", key, reapply)
        if self.settings.refund_auto_success_seconds is not None:
            self._schedule_refund_success(key, self.settings.refund_auto_success_seconds)
        return self.refund_view(updated)

    def refund_view(self, refund: Document) -> dict[str, Any]:
        view: dict[str, Any] = {
            "refund_id": refund["refund_id"],
            "out_refund_no": refund["out_refund_no"],
            "transaction_id": refund["transaction_id"],
            "out_trade_no": refund["out_trade_no"],
            "channel": refund.get("channel", "ORIGINAL"),
            "user_received_account": refund.get("user_received_account", "支付用户零钱"),
            "create_time": refund["create_time"],
            "status": refund["status"],
            "funds_account": refund["funds_account"],
            **self._refund_split(refund),
        }
        if refund.get("success_time"):
            view["success_time"] = refund["success_time"]
        if refund.get("sub_mchid"):
            view["sub_mchid"] = refund["sub_mchid"]
        return view

    def _refund_split(self, refund: Document) -> dict[str, Any]:
        """A refund's `amount` and `promotion_detail`: of a payment that used 代金券 (favor.py), each coupon
        gives back its share by cumulative floors, `⌊(before + refund) × coupon / total⌋ − ⌊before × coupon /
        total⌋` with `before` what the order's earlier refunds took (`discount_refund`), so refunding the whole
        order gives back the whole coupon; the payer gets the rest, and the merchant's settlement loses only
        what it collected (a 免充值 NOCASH coupon was never settled to it) [L: WeChat's exact rounding]."""
        order = self.store.get("orders", refund["order_key"]) or {}
        total, amount, before = refund["total"], refund["refund"], refund.get("refunded_before", 0)
        promotions = order.get("promotion_detail") or []
        shares = [(p, (before + amount) * p["amount"] // total - before * p["amount"] // total) for p in promotions]
        discount_refund = sum(share for _, share in shares)
        nocash = sum(p["amount"] for p in promotions if p["type"] == "NOCASH")
        nocash_refund = sum(share for p, share in shares if p["type"] == "NOCASH")
        return {
            "promotion_detail": [
                {
                    "promotion_id": p["coupon_id"],
                    "scope": p["scope"],
                    "type": "COUPON" if p["type"] == "CASH" else "DISCOUNT",
                    "amount": p["amount"],
                    "refund_amount": share,
                }
                for p, share in shares
            ],
            "amount": {
                "total": total,
                "refund": amount,
                "payer_total": total - sum(p["amount"] for p in promotions),
                "payer_refund": amount - discount_refund,
                "settlement_refund": amount - nocash_refund,
                "settlement_total": total - nocash,
                "discount_refund": discount_refund,
                "currency": "CNY",
                "from": [],
            },
        }

    def get_refund(self, merchant: Document, out_refund_no: str, sub_mchid: str | None) -> dict[str, Any]:
        scope = self._scope(merchant, partner=bool(sub_mchid), sub_mchid=sub_mchid)
        refund = self.store.get("refunds", f"{scope}:{out_refund_no}")
        if refund is None:
            raise WxError(404, "RESOURCE_NOT_EXISTS", "refund does not exist")
        return self.refund_view(refund)

    def _schedule_refund_success(self, key: str, delay_seconds: float) -> None:
        self.schedule(delay_seconds, lambda: self.finish_refund(key, "SUCCESS"))

    def schedule(self, delay_seconds: float, action: Callable[[], object]) -> None:
        """Run `action` later in the loop; a ControlError (already finished by hand) is ignored."""
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            with contextlib.suppress(ControlError):
                action()

        handle = loop.call_later(max(0.0, delay_seconds), fire)
        self._timers.add(handle)

    def find_refund_for_control(self, out_refund_no: str, scope: str | None) -> Document:
        matches = [
            r
            for r in self.store.list("refunds")
            if r["out_refund_no"] == out_refund_no and (scope is None or r["scope"] == scope)
        ]
        if not matches:
            raise ControlError(404, f"no refund {out_refund_no}")
        if len(matches) > 1:
            raise ControlError(409, f"{out_refund_no} exists for several merchants; pass ?mchid=<scope>")
        return matches[0]

    def finish_refund(self, key: str, status: str) -> Document:
        """PROCESSING → SUCCESS | ABNORMAL | CLOSED, then the REFUND.* callback."""

        def finish(current: Document) -> Document:
            if current["status"] != "PROCESSING":
                raise ControlError(409, f"refund is {current['status']}, not PROCESSING")
            success_time = rfc3339(now_cst()) if status == "SUCCESS" else None
            return {**current, "status": status, "success_time": success_time, "auto_due_unix": None}

        refund = self.store.update("refunds", key, finish)
        if status == "SUCCESS":
            self.store.update("orders", refund["order_key"], lambda o: {**o, "trade_state": "REFUND"})
        merchant = self.store.get("merchants", refund["mchid"]) or {}
        resource: dict[str, Any] = {
            "out_trade_no": refund["out_trade_no"],
            "transaction_id": refund["transaction_id"],
            "out_refund_no": refund["out_refund_no"],
            "refund_id": refund["refund_id"],
            "refund_status": status,
            "user_received_account": "支付用户零钱",
            "amount": {
                name: value
                for name, value in self._refund_split(refund)["amount"].items()
                if name in ("total", "refund", "payer_total", "payer_refund")
            },
        }
        if refund.get("success_time"):
            resource["success_time"] = refund["success_time"]
        if refund.get("sub_mchid"):
            resource.update(sp_mchid=refund["mchid"], sub_mchid=refund["sub_mchid"])
        else:
            resource["mchid"] = refund["mchid"]
        summaries = {"SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"}
        self._notify(
            merchant,
            url=refund["notify_url"],
            event_type=f"REFUND.{status}",
            summary=summaries[status],
            original_type="refund",
            resource=resource,
            subject=refund["out_trade_no"],
        )
        return refund

    # ------------------------------------------------------------------ notifications
    def _notify(
        self,
        merchant: Document,
        *,
        url: str,
        event_type: str,
        summary: str,
        original_type: str,
        resource: dict[str, Any],
        subject: str,
    ) -> None:
        apiv3_key = merchant.get("apiv3_key")
        if not apiv3_key:
            return
        plaintext = json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        encrypted = crypto.encrypt_resource(apiv3_key, plaintext, original_type)
        event_id = str(uuid.uuid4())
        envelope = {
            "id": event_id,
            "create_time": rfc3339(now_cst()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": {"original_type": original_type, **encrypted},
        }
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

        def build() -> tuple[dict[str, str], bytes]:
            # re-signed per attempt: fresh timestamp, and the certificate current at that moment
            headers = self.signed_headers(body, merchant.get("platform_verification") or PUBLIC_KEY_MODE)
            headers.update({"Content-Type": "application/json", "User-Agent": "Mozilla/4.0 (juhe wechatpay sandbox)"})
            return headers, body

        self.dispatcher.submit(
            NotificationJob(event_id=event_id, url=url, build=build, event_type=event_type, subject=subject)
        )

    # ------------------------------------------------------------------ bills
    def request_bill(self, merchant: Document, query: dict[str, str], base_url: str) -> dict[str, Any]:
        bill_date, gzipped = self._bill_query(query, {"bill_type", "sub_mchid"})
        bill_type = query.get("bill_type", "ALL")
        if bill_type not in bills.HEADERS:
            raise WxError(400, "PARAM_ERROR", "bill_type must be ALL, SUCCESS or REFUND")
        sub_mchid = query.get("sub_mchid")
        if sub_mchid:
            self._scope(merchant, partner=True, sub_mchid=sub_mchid)
        rows = self.bill_rows(merchant["mchid"], sub_mchid, bill_date, bill_type)
        if not rows:
            raise WxError(400, "NO_STATEMENT_EXIST", "no bill for this day")
        return self._issue_bill_file(merchant, bills.render(bill_type, rows).encode("utf-8"), gzipped, base_url)

    def _bill_query(self, query: dict[str, str], extra: set[str]) -> tuple[date, bool]:
        """What both bill requests check: known parameters, bill_date (not future, ready), tar_type."""
        unknown = sorted(set(query) - {"bill_date", "tar_type"} - extra)
        if unknown:
            raise WxError(400, "PARAM_ERROR", f"unknown query parameters: {', '.join(unknown)}")
        try:
            bill_date = date.fromisoformat(query.get("bill_date", ""))
        except ValueError as exc:
            raise WxError(400, "PARAM_ERROR", "bill_date must be YYYY-MM-DD") from exc
        if query.get("tar_type") not in (None, "GZIP"):
            raise WxError(400, "PARAM_ERROR", "tar_type must be GZIP")
        today = now_cst().date()
        if bill_date > today:
            raise WxError(400, "INVALID_REQUEST", "bill_date is in the future")
        if bill_date == today and not self.settings.bill_same_day:
            raise WxError(400, "STATEMENT_CREATING", "the bill for this day is not ready yet")
        return bill_date, query.get("tar_type") == "GZIP"

    def request_fundflow_bill(self, merchant: Document, query: dict[str, str], base_url: str) -> dict[str, Any]:
        """`GET /v3/bill/fundflowbill`: the merchant's account movements of one day. BASIC holds payments
        (in), refunds (out) and, as WeChat deducts them per payment, fees (out); FEES holds the fees
        again as the fee account sees them; OPERATION is empty in the sandbox (NO_STATEMENT_EXIST)."""
        bill_date, gzipped = self._bill_query(query, {"account_type"})
        account_type = query.get("account_type", "BASIC")
        if account_type not in bills.ACCOUNT_TYPES:
            raise WxError(400, "PARAM_ERROR", "account_type must be BASIC, OPERATION or FEES")
        movements = self.fund_movements(merchant["mchid"], bill_date, account_type)
        if not movements:
            raise WxError(400, "NO_STATEMENT_EXIST", "no bill for this day")
        return self._issue_bill_file(merchant, bills.render_fundflow(movements).encode("utf-8"), gzipped, base_url)

    def fund_movements(
        self, mchid: str, bill_date: date, account_type: str
    ) -> list[tuple[str, str, str, str, str, int, str]]:
        def day_of(moment: str | None) -> bool:
            return moment is not None and datetime.fromisoformat(moment).astimezone(CST).date() == bill_date

        def wall(moment: str) -> str:
            return datetime.fromisoformat(moment).astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")

        found: list[tuple[str, str, str, str, str, int, str]] = []
        if account_type == "OPERATION":
            return found
        for order in self.store.list("orders"):
            if order["mchid"] != mchid or not order.get("transaction_id") or not day_of(order["success_time"]):
                continue
            fee_fen = (bills.fee_e5(order["total"], self.settings.fee_rate_bps) + 500) // 1000
            moment, transaction_id = wall(order["success_time"]), order["transaction_id"]
            if account_type == "BASIC":
                found.append(
                    (
                        moment,
                        transaction_id,
                        "1" + transaction_id[4:],
                        "交易",
                        "交易",
                        order["total"],
                        order["out_trade_no"],
                    )
                )
            if fee_fen:
                found.append(
                    (
                        moment,
                        transaction_id,
                        "2" + transaction_id[4:],
                        "扣除交易手续费",
                        "扣除交易手续费",
                        -fee_fen,
                        order["out_trade_no"],
                    )
                )
        if account_type == "BASIC":
            for refund in self.store.list("refunds"):
                if refund["mchid"] == mchid and refund["status"] == "SUCCESS" and day_of(refund["success_time"]):
                    found.append(
                        (
                            wall(refund["success_time"]),
                            refund["refund_id"],
                            "3" + refund["refund_id"][2:],
                            "退款",
                            "退款",
                            -refund["refund"],
                            refund["out_refund_no"],
                        )
                    )
        return sorted(found, key=lambda movement: movement[0])

    def _issue_bill_file(self, merchant: Document, content: bytes, gzipped: bool, base_url: str) -> dict[str, Any]:
        token = secrets.token_urlsafe(24)
        self.store.put(
            "bill_files",
            token,
            {
                "mchid": merchant["mchid"],
                "content": content.decode("utf-8"),
                "gzip": gzipped,
                "expires_unix": time.time() + BILL_TOKEN_TTL_SECONDS,
            },
        )
        return {
            "hash_type": "SHA1",
            "hash_value": hashlib.sha1(content).hexdigest(),
            "download_url": f"{base_url}/v3/billdownload/file?token={token}",
        }

    def download_bill(self, merchant: Document, query: dict[str, str]) -> bytes:
        token = query.get("token", "")
        entry = self.store.get("bill_files", token)
        if entry is None or entry["expires_unix"] < time.time():
            raise WxError(400, "INVALID_REQUEST", "download token is invalid or expired")
        if entry["mchid"] != merchant["mchid"]:
            raise WxError(403, "NO_AUTH", "this bill belongs to another merchant")
        content: bytes = entry["content"].encode("utf-8")
        return gzip.compress(content) if entry["gzip"] else content

    def bill_rows(self, mchid: str, sub_mchid: str | None, bill_date: date, bill_type: str) -> list[dict[str, str]]:
        def in_scope(doc: Document) -> bool:
            return doc["mchid"] == mchid and (sub_mchid is None or doc.get("sub_mchid") == sub_mchid)

        def on_day(moment: str | None) -> bool:
            return moment is not None and datetime.fromisoformat(moment).astimezone(CST).date() == bill_date

        orders = {o["key"]: o for o in self.store.list("orders") if in_scope(o)}
        discrepancies = (self.store.get("bill_discrepancies", bill_date.isoformat()) or {}).get("items", [])
        payment_rows: list[tuple[str, dict[str, str]]] = []
        for order in orders.values():
            if order.get("transaction_id") and on_day(order["success_time"]):
                payment_rows.append((order["out_trade_no"], self._payment_row(order)))
        for item in discrepancies:
            if item["kind"] == "report_success" and item["order_key"] in orders:
                order = orders[item["order_key"]]
                if not order.get("transaction_id"):
                    fake = {
                        **order,
                        "transaction_id": "4200" + _digits(24),
                        "bank_type": "OTHERS",
                        "success_time": rfc3339(
                            datetime.combine(bill_date, datetime.min.time(), CST) + timedelta(hours=12)
                        ),
                        "payer_openid": order["payer_openid"] or "o" + crypto.nonce_str(27),
                    }
                    payment_rows.append((order["out_trade_no"], self._payment_row(fake)))
        refund_rows: list[tuple[str, dict[str, str]]] = []
        for refund in self.store.list("refunds"):
            if (
                refund["order_key"] in orders
                and refund["status"] in ("SUCCESS", "PROCESSING")
                and on_day(refund["create_time"])
            ):
                refund_rows.append(
                    (
                        refund["out_trade_no"] + "/" + refund["out_refund_no"],
                        self._refund_row(orders[refund["order_key"]], refund),
                    )
                )
        for item in discrepancies:
            target = item["out_trade_no"] + ("/" + item["out_refund_no"] if item.get("out_refund_no") else "")
            pool = refund_rows if item.get("out_refund_no") else payment_rows
            if item["kind"] == "drop_line":
                pool[:] = [(k, row) for k, row in pool if k != target]
            elif item["kind"] == "change_amount":
                for k, row in pool:
                    if k == target and item.get("out_refund_no"):
                        row["退款金额"] = row["申请退款金额"] = bills.yuan(item["amount_minor"])
                    elif k == target:
                        row["应结订单金额"] = row["订单金额"] = bills.yuan(item["amount_minor"])
        rows: list[dict[str, str]] = []
        if bill_type in ("ALL", "SUCCESS"):
            rows.extend(row for _, row in payment_rows)
        if bill_type in ("ALL", "REFUND"):
            rows.extend(row for _, row in refund_rows)
        return sorted(rows, key=lambda row: row["交易时间"])

    def _common_row(self, order: Document) -> dict[str, str]:
        return {
            "公众账号ID": order["appid"] or "",
            "商户号": order["mchid"],
            "特约商户号": order.get("sub_mchid") or "0",
            "设备号": "",
            "微信订单号": order["transaction_id"] or "",
            "商户订单号": order["out_trade_no"],
            "用户标识": order["payer_openid"] or "",
            "交易类型": order["trade_type"],
            "付款银行": order["bank_type"] or "",
            "货币种类": "CNY",
            "代金券金额": "0.00",
            "充值券退款金额": "0.00",
            "商品名称": order["description"],
            "商户数据包": order.get("attach") or "",
            "费率": bills.rate_text(self.settings.fee_rate_bps),
            "费率备注": "",
        }

    def _payment_row(self, order: Document) -> dict[str, str]:
        """A payment line: 订单金额 the order's total, 代金券金额 every coupon the payer used, 应结订单金额 what
        WeChat settles to the merchant — the total less its 免充值 (NOCASH) coupons, never settled (the
        transaction's `settlement_total`) [M: 应结订单金额 = 订单金额 − 非充值代金券金额, WxJava / the v2 API]."""
        fee = bills.fee_e5(order["total"], self.settings.fee_rate_bps)
        promotions = order.get("promotion_detail") or []
        nocash = sum(p["amount"] for p in promotions if p["type"] == "NOCASH")
        return {
            **self._common_row(order),
            "交易时间": datetime.fromisoformat(order["success_time"]).strftime("%Y-%m-%d %H:%M:%S"),
            "交易状态": "SUCCESS",
            "应结订单金额": bills.yuan(order["total"] - nocash),
            "代金券金额": bills.yuan(sum(p["amount"] for p in promotions)),
            "微信退款单号": "0",
            "商户退款单号": "0",
            "退款金额": "0.00",
            "退款类型": "",
            "退款状态": "",
            "手续费": bills.yuan_e5(fee),
            "订单金额": bills.yuan(order["total"]),
            "申请退款金额": "0.00",
        }

    def _refund_row(self, order: Document, refund: Document) -> dict[str, str]:
        """A refund line: 申请退款金额 what the merchant asked, 退款金额 what comes off its settlement — the
        asked amount less the 免充值 (NOCASH) coupons' share, which WeChat gives back to the payer as the coupon
        (`settlement_refund`) — and 充值券退款金额 the 预充值 (CASH) coupons' share inside it [M: 退款金额 =
        应结退款金额 = 申请退款金额 − 非充值券退款金额, WxJava's settlementRefundFee / couponRefundFee]."""
        fee = -bills.fee_e5(refund["refund"], self.settings.fee_rate_bps)
        split = self._refund_split(refund)
        settled = split["amount"]["settlement_refund"]
        nocash_share = refund["refund"] - settled
        cash_share = split["amount"]["discount_refund"] - nocash_share
        created = datetime.fromisoformat(refund["create_time"]).strftime("%Y-%m-%d %H:%M:%S")
        succeeded = (
            datetime.fromisoformat(refund["success_time"]).strftime("%Y-%m-%d %H:%M:%S")
            if refund.get("success_time")
            else ""
        )
        return {
            **self._common_row(order),
            "交易时间": created,
            "退款申请时间": created,
            "退款成功时间": succeeded,
            "交易状态": "REFUND",
            "应结订单金额": "0.00",
            "微信退款单号": refund["refund_id"],
            "商户退款单号": refund["out_refund_no"],
            "退款金额": bills.yuan(settled),
            "充值券退款金额": bills.yuan(cash_share),
            "退款类型": "ORIGINAL",
            "退款状态": refund["status"],
            "手续费": bills.yuan_e5(fee),
            "订单金额": "0.00",
            "申请退款金额": bills.yuan(refund["refund"]),
        }

    def add_discrepancy(self, bill_date: date, item: dict[str, Any]) -> list[dict[str, Any]]:
        order = self.find_orders_for_control(item["out_trade_no"], item.get("mchid"))
        entry = {
            "kind": item["kind"],
            "out_trade_no": item["out_trade_no"],
            "order_key": order["key"],
            "out_refund_no": item.get("out_refund_no"),
            "amount_minor": item.get("amount_minor"),
        }
        if entry["kind"] == "change_amount" and not isinstance(entry["amount_minor"], int):
            raise ControlError(422, "change_amount needs amount_minor (integer fen)")
        with self.store.transaction():
            current = self.store.get("bill_discrepancies", bill_date.isoformat()) or {"items": []}
            current["items"].append(entry)
            self.store.put("bill_discrepancies", bill_date.isoformat(), current)
        items: list[dict[str, Any]] = current["items"]
        return items
