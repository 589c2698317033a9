"""The Alipay sandbox's core: the `/gateway.do` methods' rules and state (trades, apps, bills, notifications),
what `app.py`'s routes call.

Strict where Alipay is strict (docs/protocols/alipay.md, §10): query-string and form parameters are merged, the RSA2
request signature is checked over every parameter but `sign`, each response node is signed over its exact
JSON text (except isv.invalid-signature refusals, which Alipay leaves unsigned), notifications are
form-encoded, signed for rsaCheckV1 and retried until the literal `success`.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode

from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import HTTPException
from fastapi.responses import Response

from sandboxes.alipay import crypto, payments, royalty, transfers, vouchers
from sandboxes.alipay.bills import build_bill_zip
from sandboxes.alipay.certificates import CertificateAuthority
from sandboxes.alipay.settings import NOTIFY_SCHEDULE_SECONDS, SandboxSettings
from sandboxes.alipay.trades import (
    APPS,
    TRADE_CLOSED,
    TRADE_FINISHED,
    TRADE_SUCCESS,
    BizError,
    TradeBook,
    TradeEvent,
    beijing,
    bill_window,
    from_iso,
    new_app_id,
    new_pid,
    parse_beijing,
    yuan,
)
from sandboxes.common.faults import FaultSettings
from sandboxes.common.http_client import Reply
from sandboxes.common.keys import KeyPair, generate_rsa_key_pair, load_or_create_rsa_key, load_public_key_pem
from sandboxes.common.notify import NotificationDispatcher, NotificationJob
from sandboxes.common.paths import sandbox_data_dir
from sandboxes.common.store import DocumentStore

CHANNEL = "alipay"
GATEWAY_PATH = "/gateway.do"
BILL_PATH = "/downloadBillFile.resource"
BILL_TOKENS = "bill_tokens"
DISCREPANCIES = "bill_discrepancies"
JSON_MEDIA_TYPE = "application/json;charset=utf-8"
REQUEST_BODY_MAX_BYTES = 256 * 1024

API_METHODS = (
    "alipay.trade.precreate",
    "alipay.trade.query",
    "alipay.trade.close",
    "alipay.trade.cancel",
    "alipay.trade.refund",
    "alipay.trade.fastpay.refund.query",
    "alipay.data.dataservice.bill.downloadurl.query",
    *royalty.METHODS,
    *payments.METHODS,
    *transfers.METHODS,
    *vouchers.METHODS,
)
BROWSER_METHODS = ("alipay.trade.page.pay", "alipay.trade.wap.pay")
REQUIRED_COMMON = (
    ("app_id", "isv.missing-app-id"),
    ("method", "isv.missing-method"),
    ("sign_type", "isv.missing-signature-type"),
    ("sign", "isv.missing-signature"),
    ("timestamp", "isv.missing-timestamp"),
    ("version", "isv.missing-version"),
)


def node_name(method: str | None) -> str:
    if method in API_METHODS or method in BROWSER_METHODS:
        assert method is not None
        return method.replace(".", "_") + "_response"
    return "error_response"


def is_acknowledged(response: Reply) -> bool:
    """Alipay stops retrying only when the merchant's body is exactly the 7 characters `success`."""
    return response.status_code == 200 and response.content == b"success"


class GatewayError(Exception):
    """A gateway-level refusal (40001 missing / 40002 invalid common parameter or signature)."""

    def __init__(
        self, code: str, msg: str, sub_code: str, sub_msg: str, *, signed: bool = True, error_response: bool = False
    ) -> None:
        super().__init__(f"{code} {sub_code}: {sub_msg}")
        self.node = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}
        self.signed = signed
        self.error_response = error_response  # answered in `error_response`, not the method's node


def missing(sub_code: str, sub_msg: str) -> GatewayError:
    return GatewayError("40001", "Missing Required Arguments", sub_code, sub_msg)


def invalid_argument(sub_code: str, sub_msg: str, *, signed: bool = True) -> GatewayError:
    return GatewayError("40002", "Invalid Arguments", sub_code, sub_msg, signed=signed)


def merge_params(query: str, body: bytes) -> dict[str, str]:
    """Query string + form body, as Alipay reads them; a key given twice is a refusal, not a guess."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="strict")
        if body:
            pairs += parse_qsl(body.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise invalid_argument("isv.invalid-charset", f"parameters must be UTF-8: {exc}") from exc
    merged: dict[str, str] = {}
    for key, value in pairs:
        if key in merged and merged[key] != value:
            raise invalid_argument("isv.invalid-parameter", f"parameter {key} given twice with different values")
        merged[key] = value
    return merged


class Sandbox:
    """Everything one sandbox process holds; routes are thin wrappers over these methods."""

    def __init__(self, settings: SandboxSettings, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.clock = clock
        data_dir = sandbox_data_dir(CHANNEL, settings.data_dir)
        self.store = DocumentStore(data_dir / "store.sqlite3")
        self.platform_key: KeyPair = load_or_create_rsa_key(data_dir, "alipay_platform")
        self.ca = CertificateAuthority(data_dir, self.platform_key)
        self.faults = FaultSettings()
        self.dispatcher = NotificationDispatcher(
            schedule_seconds=NOTIFY_SCHEDULE_SECONDS,
            is_acknowledged=is_acknowledged,
            faults=self.faults,
            scale=settings.notify_scale,
            timeout_seconds=settings.notify_timeout_seconds,
        )
        self.trades = TradeBook(self.store, on_event=self.notify, clock=clock)
        self.vouchers = vouchers.Vouchers(self.store, clock, self.send_message)

    @property
    def signing_key(self) -> rsa.RSAPrivateKey:
        return self.platform_key.private_key

    def respond(
        self, method: str | None, node: dict[str, Any], *, signed: bool = True, cert_mode: bool = False
    ) -> Response:
        text = crypto.signed_response_text(
            node_name(method), node, self.signing_key if signed else None, self.ca.alipay_sn if cert_mode else None
        )
        return Response(content=text.encode("utf-8"), media_type=JSON_MEDIA_TYPE)

    # ------------------------------------------------------------------ apps

    def app(self, app_id: str) -> dict[str, Any] | None:
        return self.store.get(APPS, app_id)

    def register_app(
        self, app_id: str | None, public_key_pem: str | None, seller_id: str | None, cert_mode: bool = False
    ) -> dict[str, Any]:
        generated: KeyPair | None = None
        if public_key_pem is None:
            generated = generate_rsa_key_pair()
            public_key_pem = generated.public_pem
        try:
            load_public_key_pem(public_key_pem)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=f"app_public_key_pem: {exc}") from exc
        app_id = app_id or new_app_id()
        current = self.app(app_id) or {}
        document = {
            "app_id": app_id,
            "app_public_key_pem": public_key_pem,
            "seller_id": seller_id or current.get("seller_id") or new_pid(),
            "app_cert_sn": None,
        }
        issued: dict[str, str] = {}
        if cert_mode:  # the app switches to certificate mode: Alipay issues its app certificate
            issued_set = self.ca.issue_app_certificate(app_id, public_key_pem)
            issued = {name: getattr(issued_set, name) for name in issued_set.__slots__}
            document["app_cert_sn"] = issued_set.app_cert_sn
        self.store.put(APPS, app_id, document)
        answer = {**document, **issued, "alipay_public_key_pem": self.platform_key.public_pem}
        if generated is not None:
            answer["app_private_key_pem"] = generated.private_pem
        return answer

    # ------------------------------------------------------------------ gateway

    def authenticate(self, params: dict[str, str]) -> dict[str, Any]:
        """Common parameters and the RSA2 signature; returns the calling app."""
        for name, sub_code in REQUIRED_COMMON:
            if not params.get(name):
                raise missing(sub_code, f"缺少必选参数 {name}")
        if params.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
            raise invalid_argument("isv.invalid-charset", "charset must be utf-8 in this sandbox")
        if params.get("format", "JSON").upper() != "JSON":
            raise invalid_argument("isv.invalid-format", "format must be JSON")
        if params["version"] != "1.0":
            raise invalid_argument("isv.invalid-version", "version must be 1.0")
        if params["sign_type"] != "RSA2":
            raise invalid_argument("isv.invalid-signature-type", "sign_type must be RSA2")
        moment = parse_beijing(params["timestamp"])
        if moment is None:
            raise invalid_argument("isv.invalid-timestamp", "timestamp must be yyyy-MM-dd HH:mm:ss (Beijing)")
        if abs((self.clock() - moment).total_seconds()) > self.settings.timestamp_skew_seconds_max:
            raise invalid_argument("isv.invalid-timestamp", "timestamp too far from Alipay time")
        app = self.app(params["app_id"])
        if app is None:
            raise invalid_argument("isv.invalid-app-id", "无效的AppID参数")
        self.check_cert_sn(app, params)
        public_key = load_public_key_pem(app["app_public_key_pem"])
        if not crypto.verify(crypto.request_sign_content(params), params["sign"], public_key):
            raise invalid_argument(
                "isv.invalid-signature", "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配", signed=False
            )
        for url_param in ("notify_url", "return_url"):
            url = params.get(url_param)
            if url and not url.startswith(("http://", "https://")):
                raise invalid_argument("isv.invalid-parameter", f"{url_param} must be an http(s) URL")
        return app

    def check_cert_sn(self, app: dict[str, Any], params: dict[str, str]) -> None:
        """Certificate mode (docs/protocols/alipay.md §7): the request names the app certificate and the root.
        The sub_codes are the sandbox's own choice [L]; Alipay's exact ones are undocumented here."""
        if not app.get("app_cert_sn"):
            if params.get("app_cert_sn") or params.get("alipay_root_cert_sn"):
                raise invalid_argument("isv.app-not-in-cert-mode", "应用未启用公钥证书模式")
            return
        if not params.get("app_cert_sn"):
            raise missing("isv.missing-app-cert-sn", "缺少必选参数 app_cert_sn")
        if not params.get("alipay_root_cert_sn"):
            raise missing("isv.missing-alipay-root-cert-sn", "缺少必选参数 alipay_root_cert_sn")
        if params["app_cert_sn"] != app["app_cert_sn"]:
            raise invalid_argument("isv.app-cert-sn-mismatch", "应用公钥证书序列号不匹配")
        if self.ca.root_sn not in params["alipay_root_cert_sn"].split("_"):
            raise invalid_argument("isv.alipay-root-cert-sn-mismatch", "支付宝根证书序列号不匹配")

    @staticmethod
    def biz_content(params: dict[str, str]) -> dict[str, Any]:
        raw = params.get("biz_content")
        if not raw:
            raise missing("isv.missing-biz-content", "缺少必选参数 biz_content")
        try:
            biz = json.loads(raw, parse_float=Decimal)  # amounts sent as JSON numbers stay exact (no float)
        except ValueError as exc:
            raise invalid_argument("isv.invalid-parameter", f"biz_content is not JSON: {exc}") from exc
        if not isinstance(biz, dict):
            raise invalid_argument("isv.invalid-parameter", "biz_content must be a JSON object")
        return biz

    def handle_api(self, method: str, app: dict[str, Any], params: dict[str, str], base_url: str) -> dict[str, Any]:
        app_id = app["app_id"]
        if method == "alipay.system.oauth.token":  # common parameters only; success carries no code
            try:
                return payments.oauth_token(self.store, self.clock(), app_id, params)
            except payments.OauthCodeInvalid as exc:
                raise GatewayError(
                    "40002", "Invalid Arguments", "isv.code-invalid", str(exc), error_response=True
                ) from exc
        biz = self.biz_content(params)
        ok = {"code": "10000", "msg": "Success"}
        if method == "alipay.trade.pay":
            return payments.barcode_pay(self.trades, app_id, biz, params.get("notify_url"), beijing(self.clock()))
        if method == "alipay.trade.create":
            return {**ok, **payments.create_trade(self.trades, app_id, biz, params.get("notify_url"))}
        if method in transfers.METHODS:
            if not app.get("app_cert_sn"):  # Alipay opens its fund APIs to certificate-mode apps only
                raise BizError(
                    "isv.insufficient-isv-permissions",
                    "资金类接口需使用公钥证书模式 (certificate mode)",
                    code="40006",
                    msg="Insufficient Permissions",
                )
            if method == "alipay.fund.trans.uni.transfer":
                return {**ok, **transfers.transfer(self.store, app_id, biz, beijing(self.clock()))}
            if method == "alipay.fund.trans.common.query":
                return {**ok, **transfers.query(self.store, app_id, biz)}
            return {**ok, **transfers.account(self.store, app_id, app["seller_id"], biz)}
        if method in vouchers.METHODS:
            return {**ok, **self.vouchers.handle(app_id, method, biz)}
        if method == "alipay.trade.precreate":
            trade = self.trades.create(
                app_id=app_id, method=method, biz=biz, notify_url=params.get("notify_url"), return_url=None
            )
            return {**ok, "out_trade_no": trade["out_trade_no"], "qr_code": f"{base_url}pay/qr/{trade['qr_token']}"}
        if method == "alipay.trade.query":
            options = biz.get("query_options")
            shown = options if isinstance(options, list) else []
            return {**ok, **self.query_fields(self.trades.existing(app_id, biz), shown)}
        if method == "alipay.trade.close":
            trade = self.trades.close(self.trades.existing(app_id, biz))
            return {**ok, "trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"]}
        if method == "alipay.trade.cancel":
            trade, action = self.trades.cancel(app_id, biz)
            return {
                **ok,
                "trade_no": trade["trade_no"],
                "out_trade_no": trade["out_trade_no"],
                "retry_flag": "N",
                "action": action,
            }
        if method == "alipay.trade.refund":
            trade, refund, changed = self.trades.refund(self.trades.existing(app_id, biz), biz)
            return {
                **ok,
                "trade_no": trade["trade_no"],
                "out_trade_no": trade["out_trade_no"],
                "buyer_logon_id": trade["buyer_logon_id"],
                "buyer_user_id": trade["buyer_id"],
                "fund_change": "Y" if changed else "N",
                "refund_fee": yuan(trade["refunded_fen"]),
                "send_back_fee": yuan(refund["amount_fen"]),
                "gmt_refund_pay": beijing(from_iso(refund["refunded_at"]) or self.clock()),
            }
        if method == "alipay.trade.fastpay.refund.query":
            return {**ok, **self.refund_query_fields(app_id, biz)}
        if method == "alipay.trade.royalty.relation.bind":
            return {**ok, **royalty.bind(self.trades, app_id, biz)}
        if method == "alipay.trade.royalty.relation.unbind":
            return {**ok, **royalty.unbind(self.trades, app_id, biz)}
        if method == "alipay.trade.royalty.relation.batchquery":
            return {**ok, **royalty.batch_query(self.trades, app_id, biz)}
        if method == "alipay.trade.order.settle":
            return {**ok, **royalty.settle(self.trades, app_id, biz, self.clock())}
        if method == "alipay.trade.order.settle.query":
            return {**ok, **royalty.settle_query(self.trades, app_id, biz)}
        return {**ok, **self.bill_url(app_id, biz, base_url)}

    def query_fields(self, trade: dict[str, Any], query_options: list[Any] | None = None) -> dict[str, Any]:
        """The trade as alipay.trade.query shows it; a voucher's part is not paid by the buyer
        (`buyer_pay_amount`) and its merchant-funded part is not received (`receipt_amount`)."""
        paid = trade["paid_at"] is not None
        amount = yuan(trade["total_fen"])
        off, merchant_off = vouchers.discount_fen(trade)
        buyer_pays, received = yuan(trade["total_fen"] - off), yuan(trade["total_fen"] - merchant_off)
        fields: dict[str, Any] = {
            "trade_no": trade["trade_no"],
            "out_trade_no": trade["out_trade_no"],
            "buyer_logon_id": trade["buyer_logon_id"] or "",
            "trade_status": trade["status"],
            "total_amount": amount,
            "buyer_pay_amount": buyer_pays if paid else "0.00",
            "receipt_amount": received if paid else "0.00",
            "invoice_amount": buyer_pays if paid else "0.00",
            "point_amount": "0.00",
        }
        if paid:
            fields["buyer_user_id"] = trade["buyer_id"]
            fields["send_pay_date"] = beijing(from_iso(trade["paid_at"]) or self.clock())
            fields["fund_bill_list"] = [{"fund_channel": "ALIPAYACCOUNT", "amount": buyer_pays}]
            if off:
                fields["fund_bill_list"].append({"fund_channel": "COUPON", "amount": yuan(off)})
            if "voucher_detail_list" in (query_options or []):
                fields["voucher_detail_list"] = vouchers.detail_list(trade)
        return fields

    def refund_query_fields(self, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
        out_request_no = biz.get("out_request_no")
        if not isinstance(out_request_no, str) or not out_request_no:
            raise BizError("ACQ.INVALID_PARAMETER", "out_request_no is required")
        trade = self.trades.existing(app_id, biz)
        for refund in trade["refunds"]:
            if refund["out_request_no"] == out_request_no:
                fields: dict[str, Any] = {
                    "trade_no": trade["trade_no"],
                    "out_trade_no": trade["out_trade_no"],
                    "out_request_no": out_request_no,
                    "total_amount": yuan(trade["total_fen"]),
                    "refund_amount": yuan(refund["amount_fen"]),
                    "refund_status": "REFUND_SUCCESS",
                }
                if refund.get("reason"):
                    fields["refund_reason"] = refund["reason"]
                options = biz.get("query_options")
                if isinstance(options, list) and "gmt_refund_pay" in options:
                    fields["gmt_refund_pay"] = beijing(from_iso(refund["refunded_at"]) or self.clock())
                return fields
        return {}  # Alipay: 10000 with no refund fields when out_request_no is unknown

    def bill_url(self, app_id: str, biz: dict[str, Any], base_url: str) -> dict[str, Any]:
        if biz.get("bill_type") not in ("trade", "signcustomer"):
            raise BizError("ACQ.INVALID_PARAMETER", "bill_type must be trade or signcustomer")
        bill_date = biz.get("bill_date")
        if not isinstance(bill_date, str):
            raise BizError("ACQ.INVALID_PARAMETER", "bill_date is required")
        start, end, _compact = bill_window(bill_date)
        now = self.clock()
        available_from = end if not self.settings.bill_same_day else start
        if now < available_from:
            raise BizError("isp.bill_not_exist", "账单不存在")
        token = secrets.token_urlsafe(24)
        expires = now + timedelta(seconds=self.settings.bill_url_ttl_seconds)
        self.store.put(
            BILL_TOKENS,
            token,
            {
                "app_id": app_id,
                "bill_date": bill_date,
                "expires_at": expires.isoformat(),
                "bill_type": biz["bill_type"],
            },
        )
        app = self.app(app_id) or {}
        query = urlencode(
            {
                "bizType": biz["bill_type"],
                "userId": app.get("seller_id", ""),
                "fileType": "csv.zip",
                "bizDates": bill_date.replace("-", ""),
                "downloadFileName": f"{app.get('seller_id', '')}_{bill_date.replace('-', '')}.csv.zip",
                "fileId": uuid.uuid4().hex,
                "timestamp": str(int(now.timestamp())),
                "token": token,
            }
        )
        return {"bill_download_url": f"{base_url}{BILL_PATH.lstrip('/')}?{query}"}

    def bill_zip(self, token: str) -> tuple[str, bytes]:
        grant = self.store.get(BILL_TOKENS, token)
        if grant is None or datetime.fromisoformat(grant["expires_at"]) < self.clock():
            raise HTTPException(status_code=404, detail="bill download link unknown or expired")
        app = self.app(grant["app_id"]) or {"seller_id": "2088000000000000"}
        start, end, compact = bill_window(grant["bill_date"])
        discrepancies = [
            item
            for day_items in (self.store.get(DISCREPANCIES, grant["bill_date"]) or {"items": []},)
            for item in day_items["items"]
            if item.get("app_id") in (None, grant["app_id"])
        ]
        return build_bill_zip(
            pid=app["seller_id"],
            compact_date=compact,
            trades=self.trades.list_for_app(grant["app_id"]),
            discrepancies=discrepancies,
            start=start,
            end=end,
            fee_rate_bps=self.settings.fee_rate_bps,
            exported_at=self.clock(),
            bill_type=grant.get("bill_type", "trade"),
        )

    # ------------------------------------------------------------------ browser flows

    def return_redirect(self, trade: dict[str, Any]) -> str | None:
        """The signed GET the buyer's browser makes to return_url after paying (docs/protocols/alipay.md §5)."""
        if not trade.get("return_url"):
            return None
        app = self.app(trade["app_id"]) or {}
        params = {
            "charset": "utf-8",
            "out_trade_no": trade["out_trade_no"],
            "method": trade["method"] + ".return",
            "total_amount": yuan(trade["total_fen"]),
            "trade_no": trade["trade_no"],
            "auth_app_id": trade["app_id"],
            "version": "1.0",
            "app_id": trade["app_id"],
            "sign_type": "RSA2",
            "seller_id": app.get("seller_id", ""),
            "timestamp": beijing(self.clock()),
        }
        params["sign"] = crypto.sign(crypto.notify_sign_content(params), self.signing_key)
        separator = "&" if "?" in trade["return_url"] else "?"
        return str(trade["return_url"]) + separator + urlencode(params)

    # ------------------------------------------------------------------ notifications

    def send_message(self, app_id: str, msg_method: str, biz_content: dict[str, Any]) -> None:
        """An open-platform message (e.g. `alipay.marketing.activity.message.used`) to the app's message
        gateway, signed like a notification and retried until `success`; none without a gateway."""
        gateway = self.store.get(vouchers.GATEWAYS, app_id)
        if gateway is None:
            return
        notify_id = uuid.uuid4().hex
        params = {
            "msg_method": msg_method,
            "app_id": app_id,
            "biz_content": json.dumps(biz_content, ensure_ascii=False, separators=(",", ":")),
            "utc_timestamp": str(int(self.clock().timestamp() * 1000)),
            "version": "1.1",
            "charset": "utf-8",
            "notify_id": notify_id,
            "sign_type": "RSA2",
        }

        def build() -> tuple[dict[str, str], bytes]:
            signed = {**params, "sign": crypto.sign(crypto.notify_sign_content(params), self.signing_key)}
            return {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, urlencode(signed).encode()

        self.dispatcher.submit(
            NotificationJob(event_id=notify_id, url=gateway["url"], build=build, event_type=msg_method, subject=app_id)
        )

    def pay_with_voucher(self, trade: dict[str, Any], voucher_code: str | None) -> dict[str, Any]:
        """The buyer pays (with one voucher, if named): the voucher is used with the payment, or neither."""
        if not voucher_code:
            return self.trades.pay(trade)
        with self.store.transaction():
            detail = self.vouchers.detail_for(trade, voucher_code)
            paid = self.trades.pay({**trade, "vouchers": [detail]}, buyer_id=detail["buyer_id"])
            self.vouchers.redeem(paid)
        return paid

    def notify(self, event: TradeEvent) -> None:
        trade = event.trade
        if not trade.get("notify_url"):
            return
        if trade["status"] not in (TRADE_SUCCESS, TRADE_CLOSED, TRADE_FINISHED):
            return  # WAIT_BUYER_PAY is not notified by default (docs/protocols/alipay.md §6)
        notify_id = uuid.uuid4().hex
        app = self.app(trade["app_id"]) or {}

        def build() -> tuple[dict[str, str], bytes]:
            params = self.notification_params(trade, event.refund, app, notify_id)
            params["sign"] = crypto.sign(crypto.notify_sign_content(params), self.signing_key)
            return {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, urlencode(params).encode()

        kind = "refund" if event.refund else trade["status"]
        self.dispatcher.submit(
            NotificationJob(
                event_id=notify_id, url=trade["notify_url"], build=build, event_type=kind, subject=trade["out_trade_no"]
            )
        )

    def notification_params(
        self, trade: dict[str, Any], refund: dict[str, Any] | None, app: dict[str, Any], notify_id: str
    ) -> dict[str, str]:
        amount = yuan(trade["total_fen"])
        paid_at = from_iso(trade.get("paid_at"))
        opened_at = from_iso(trade.get("opened_at")) or from_iso(trade["created_at"])
        params: dict[str, str] = {
            "notify_time": beijing(self.clock()),
            "notify_type": "trade_status_sync",
            "notify_id": notify_id,
            "app_id": trade["app_id"],
            "auth_app_id": trade["app_id"],
            "charset": "utf-8",
            "version": "1.0",
            "sign_type": "RSA2",
            "trade_no": trade["trade_no"],
            "out_trade_no": trade["out_trade_no"],
            "seller_id": app.get("seller_id", ""),
            "seller_email": "sandbox-seller@alipay.example",
            "trade_status": trade["status"],
            "subject": trade["subject"],
            "total_amount": amount,
            "gmt_create": beijing(opened_at or self.clock()),
        }
        if trade.get("body"):
            params["body"] = trade["body"]
        if trade.get("passback_params"):
            params["passback_params"] = str(trade["passback_params"])
        if trade.get("buyer_id"):
            params["buyer_id"] = trade["buyer_id"]
            params["buyer_logon_id"] = trade["buyer_logon_id"]
        if paid_at is not None:
            off, merchant_off = vouchers.discount_fen(trade)
            buyer_pays = yuan(trade["total_fen"] - off)
            funds = [{"amount": buyer_pays, "fundChannel": "ALIPAYACCOUNT"}]
            if off:
                funds.append({"amount": yuan(off), "fundChannel": "COUPON"})
                params["voucher_detail_list"] = json.dumps(
                    vouchers.detail_list(trade), ensure_ascii=False, separators=(",", ":")
                )
            params.update(
                receipt_amount=yuan(trade["total_fen"] - merchant_off),
                invoice_amount=buyer_pays,
                buyer_pay_amount=buyer_pays,
                point_amount="0.00",
                gmt_payment=beijing(paid_at),
                fund_bill_list=json.dumps(funds, separators=(",", ":")),
            )
        if trade["status"] == TRADE_CLOSED and trade.get("closed_at"):
            params["gmt_close"] = beijing(from_iso(trade["closed_at"]) or self.clock())
        if refund is not None:
            refunded_at = from_iso(refund["refunded_at"]) or self.clock()
            params.update(
                out_biz_no=refund["out_request_no"],
                refund_fee=yuan(trade["refunded_fen"]),
                gmt_refund=f"{beijing(refunded_at)}.{refunded_at.microsecond // 1000:03d}",
            )
        return params
