"""The UnionPay side: merchants, transactions (consume, refund, revoke), notifications, the ZM file.

A transaction is keyed by `merId:orderId`; its `txnTime` must be repeated exactly by a query (a
different one is "no such transaction", 34), as `merId + orderId + txnTime` identify it at UnionPay.
A web/app consume exists only once the payer submitted the card page (before that a query answers
34); then it is `success`, `failed` (declined card) or `unknown` (the unknown-outcome card: queries
answer origRespCode 03 `unknown_queries` times, then it succeeds and is notified).
Refunds (04) and revokes (31) are their own transactions naming the consume by `origQryId`; they are
accepted (00) and succeed at once, then notified to their `backUrl`.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from sandboxes.common.notify import NotificationDispatcher, NotificationJob
from sandboxes.common.store import Document, DocumentStore
from sandboxes.unionpay import crypto
from sandboxes.unionpay.certificates import SandboxPki
from sandboxes.unionpay.settings import UnionPaySettings

BEIJING = timezone(timedelta(hours=8))
MERCHANTS, TXNS, TNS, QUERY_IDS, COUNTERS = "merchants", "txns", "tns", "query_ids", "counters"
CREATED, SUCCESS, FAILED, UNKNOWN = "created", "success", "failed", "unknown"
SMS_CODE = "111111"  # UnionPay's test environment SMS code


@dataclass(frozen=True, slots=True)
class TestCard:
    outcome: str  # success | declined | unknown
    card_type: str  # 01 debit, 02 credit
    issuer: str


TEST_CARDS: dict[str, TestCard] = {
    "6216261000000000018": TestCard("success", "01", "平安银行"),
    "6221558812340000": TestCard("success", "02", "平安银行信用卡"),
    "6216261000000000026": TestCard("declined", "01", "平安银行"),
    "6216261000000000034": TestCard("unknown", "01", "平安银行"),
}
DECLINE_CODE, DECLINE_MSG = "01", "交易失败。详情请咨询95516"


class UnionPayRefusal(Exception):
    """A request UnionPay answers with a non-00 respCode (signed when the merchant is known)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def beijing_now() -> datetime:
    return datetime.now(UTC).astimezone(BEIJING)


class UnionPay:
    def __init__(
        self, settings: UnionPaySettings, store: DocumentStore, pki: SandboxPki, dispatcher: NotificationDispatcher
    ) -> None:
        self.settings = settings
        self.store = store
        self.pki = pki
        self.dispatcher = dispatcher

    # ------------------------------------------------------------------ merchants and signatures
    def register_merchant(self, mer_id: str | None) -> Document:
        """Issue a merchant PFX; returns the connector's config fields (except base_url)."""
        mer = mer_id or f"777{secrets.randbelow(10**12):012d}"
        password = secrets.token_hex(8)
        pfx, certificate = self.pki.issue_merchant(mer, password)
        merchant = self.store.get(MERCHANTS, mer) or {"mer_id": mer, "certs": {}}
        merchant["certs"][str(certificate.serial_number)] = certificate.public_bytes(Encoding.PEM).decode()
        self.store.put(MERCHANTS, mer, merchant)
        return {
            "mer_id": mer,
            "sign_pfx_base64": base64.b64encode(pfx).decode(),
            "sign_pfx_password": password,
            "cert_id": str(certificate.serial_number),
            "root_cert_pem": self.pki.root.pem,
            "middle_cert_pem": self.pki.middle.pem,
            "validate_cn_name": self.settings.production_cn,
        }

    def authenticate(self, fields: dict[str, str]) -> str:
        """The merchant of a request whose signature checks with the certificate named by certId."""
        if fields.get("version") != "5.1.0" or fields.get("signMethod") != "01":
            raise UnionPayRefusal("11", "版本号或签名方法错误 (version 5.1.0, signMethod 01 only)")
        merchant = self.store.get(MERCHANTS, fields.get("merId", ""))
        pem = merchant["certs"].get(fields.get("certId", "")) if merchant else None
        if pem is None:
            raise UnionPayRefusal("11", "商户或证书不存在 (unknown merId or certId)")
        key = x509.load_pem_x509_certificate(pem.encode()).public_key()
        if not isinstance(key, rsa.RSAPublicKey) or not crypto.verify(fields, key):
            raise UnionPayRefusal("11", "验证签名失败")
        return str(merchant["mer_id"]) if merchant else ""

    def signed(self, fields: dict[str, str]) -> dict[str, str]:
        return crypto.sign(fields, self.pki.sign.key, self.pki.sign.pem)

    # ------------------------------------------------------------------ transactions
    def _next_trace(self) -> str:
        def bump(doc: Document) -> Document:
            return {"n": (int(doc["n"]) % 999999) + 1}

        self.store.insert_if_absent(COUNTERS, "trace", {"n": 0})
        return f"{self.store.update(COUNTERS, 'trace', bump)['n']:06d}"

    @staticmethod
    def _check_amount(value: str | None) -> int:
        if not value or not value.isdigit() or len(value) > 12 or int(value) <= 0:
            raise UnionPayRefusal("30", "txnAmt 格式错误 (integer fen)")
        return int(value)

    def create_consume(self, mer_id: str, fields: dict[str, str], *, app: bool) -> str:
        """A consume waiting for the payer; returns its tn (the pay page token / app `tn`)."""
        order_id, txn_time = fields.get("orderId", ""), fields.get("txnTime", "")
        if not (8 <= len(order_id) <= 40 and order_id.isascii() and order_id.isalnum()):
            raise UnionPayRefusal("30", "orderId 格式错误 (8-40 letters and digits)")
        if len(txn_time) != 14 or not txn_time.isdigit():
            raise UnionPayRefusal("30", "txnTime 格式错误")
        if fields.get("currencyCode") != "156" or fields.get("txnType") != "01":
            raise UnionPayRefusal("30", "currencyCode/txnType 错误")
        amount = self._check_amount(fields.get("txnAmt"))
        tn = f"{beijing_now():%Y%m%d%H%M%S}{secrets.randbelow(10**7):07d}"
        txn = {
            "mer_id": mer_id,
            "order_id": order_id,
            "txn_time": txn_time,
            "txn_type": "01",
            "amount": amount,
            "status": CREATED,
            "channel_type": fields.get("channelType", ""),
            "back_url": fields.get("backUrl"),
            "front_url": fields.get("frontUrl"),
            "req_reserved": fields.get("reqReserved"),
            "pay_timeout": fields.get("payTimeout"),
            "tn": tn,
            "app": app,
            "refunded": 0,
            "query_id": None,
            "unknown_left": 0,
        }
        if not self.store.insert_if_absent(TXNS, f"{mer_id}:{order_id}", txn):
            existing = self.store.get(TXNS, f"{mer_id}:{order_id}")
            assert existing is not None
            if existing["status"] != CREATED or existing["txn_time"] != txn_time or existing["amount"] != amount:
                raise UnionPayRefusal("12", "重复交易 (orderId already used)")
            return str(existing["tn"])
        self.store.put(TNS, tn, {"key": f"{mer_id}:{order_id}"})
        return tn

    def by_tn(self, tn: str) -> Document | None:
        ref = self.store.get(TNS, tn)
        return None if ref is None else self.store.get(TXNS, ref["key"])

    def get(self, mer_id: str, order_id: str) -> Document | None:
        return self.store.get(TXNS, f"{mer_id}:{order_id}")

    def pay(self, mer_id: str, order_id: str, card_no: str) -> Document:
        """The payer submitted the card page (card data already checked) → success, failed or unknown."""
        card = TEST_CARDS[card_no]
        now = beijing_now()

        def change(txn: Document) -> Document:
            if txn["status"] != CREATED:
                raise UnionPayRefusal("12", f"transaction is {txn['status']}")
            done = {
                **txn,
                "acc_no": f"{card_no[:6]}*****{card_no[-4:]}",
                "card_type": card.card_type,
                "issuer": card.issuer,
                "query_id": f"{now:%y%m%d%H%M%S}{secrets.randbelow(10**9):09d}",
                "trace_no": self._next_trace(),
                "trace_time": f"{now:%m%d%H%M%S}",
                "settle_date": now.date().isoformat(),
            }
            if card.outcome == "declined":
                return {**done, "status": FAILED}
            if card.outcome == "unknown":
                return {**done, "status": UNKNOWN, "unknown_left": max(self.settings.unknown_queries, 1)}
            return {**done, "status": SUCCESS}

        txn = self.store.update(TXNS, f"{mer_id}:{order_id}", change)
        self.store.put(QUERY_IDS, txn["query_id"], {"key": f"{mer_id}:{order_id}"})
        if txn["status"] in (SUCCESS, FAILED):
            self.notify(txn)
        return txn

    def resolve_unknown(self, mer_id: str, order_id: str, *, force: bool = False) -> Document:
        """One query of an unknown consume: 03 while `unknown_left` > 0, then success (and notified)."""

        def change(txn: Document) -> Document:
            if txn["status"] != UNKNOWN:
                return txn
            left = 0 if force else int(txn["unknown_left"]) - 1
            return {**txn, "unknown_left": left, "status": SUCCESS if left <= 0 else UNKNOWN, "resolved_now": left <= 0}

        txn = self.store.update(TXNS, f"{mer_id}:{order_id}", change)
        if txn.pop("resolved_now", False):
            self.store.put(TXNS, f"{mer_id}:{order_id}", txn)
            self.notify(txn)
        return txn

    def query(self, mer_id: str, fields: dict[str, str]) -> dict[str, str]:
        txn = self.get(mer_id, fields.get("orderId", ""))
        if txn is None or txn["txn_time"] != fields.get("txnTime") or txn["status"] == CREATED:
            raise UnionPayRefusal("34", "查询交易不存在")
        if txn["status"] == UNKNOWN:
            txn = self.resolve_unknown(mer_id, txn["order_id"])
            if txn["status"] == UNKNOWN:
                return {
                    **self.result_fields(txn),
                    "respCode": "00",
                    "respMsg": "成功[0000000]",
                    "origRespCode": "03",
                    "origRespMsg": "交易处理中，请稍后查询",
                }
        orig_code, orig_msg = ("00", "成功[0000000]") if txn["status"] == SUCCESS else (DECLINE_CODE, DECLINE_MSG)
        return {
            **self.result_fields(txn),
            "respCode": "00",
            "respMsg": "成功[0000000]",
            "origRespCode": orig_code,
            "origRespMsg": orig_msg,
        }

    def back_return(self, mer_id: str, fields: dict[str, str]) -> Document:
        """Refund (04, partial) or revoke (31, full, same settle day): a new accepted transaction."""
        txn_type = fields.get("txnType", "")
        amount = self._check_amount(fields.get("txnAmt"))
        order_id = fields.get("orderId", "")
        if not (8 <= len(order_id) <= 40 and order_id.isascii() and order_id.isalnum()):
            raise UnionPayRefusal("30", "orderId 格式错误")
        ref = self.store.get(QUERY_IDS, fields.get("origQryId", ""))
        original = self.store.get(TXNS, ref["key"]) if ref else None
        if original is None or original["mer_id"] != mer_id or original["txn_type"] != "01":
            raise UnionPayRefusal("35", "原交易不存在")
        if original["status"] != SUCCESS:
            raise UnionPayRefusal("01", "原交易状态不正确")
        if self.get(mer_id, order_id) is not None:
            raise UnionPayRefusal("12", "重复交易")
        now = beijing_now()
        if txn_type == "31":
            if amount != original["amount"] or original["refunded"]:
                raise UnionPayRefusal("01", "撤销金额必须等于原交易金额 (revoke is full and first)")
            if original["settle_date"] != now.date().isoformat():
                raise UnionPayRefusal("01", "只能撤销当日交易 (revoke on the same day only)")
        elif original["refunded"] + amount > original["amount"]:
            raise UnionPayRefusal("01", "退货金额超限 (refund exceeds the remaining amount)")

        def take(doc: Document) -> Document:
            if doc["refunded"] + amount > doc["amount"]:
                raise UnionPayRefusal("01", "退货金额超限")
            return {**doc, "refunded": doc["refunded"] + amount}

        self.store.update(TXNS, f"{original['mer_id']}:{original['order_id']}", take)
        txn = {
            "mer_id": mer_id,
            "order_id": order_id,
            "txn_time": fields.get("txnTime", ""),
            "txn_type": txn_type,
            "amount": amount,
            "status": SUCCESS,
            "back_url": fields.get("backUrl"),
            "req_reserved": fields.get("reqReserved"),
            "orig_query_id": original["query_id"],
            "orig_trace_no": original["trace_no"],
            "orig_trace_time": original["trace_time"],
            "acc_no": original["acc_no"],
            "card_type": original["card_type"],
            "issuer": original["issuer"],
            "orig_fee": self.fee_of(original["amount"]),
            "query_id": f"{now:%y%m%d%H%M%S}{secrets.randbelow(10**9):09d}",
            "trace_no": self._next_trace(),
            "trace_time": f"{now:%m%d%H%M%S}",
            "settle_date": now.date().isoformat(),
            "refunded": 0,
        }
        if not self.store.insert_if_absent(TXNS, f"{mer_id}:{order_id}", txn):
            raise UnionPayRefusal("12", "重复交易")
        self.store.put(QUERY_IDS, txn["query_id"], {"key": f"{mer_id}:{order_id}"})
        self.notify(txn)
        return txn

    # ------------------------------------------------------------------ messages
    @staticmethod
    def result_fields(txn: Document) -> dict[str, str]:
        fields = {
            "version": "5.1.0",
            "encoding": "UTF-8",
            "signMethod": "01",
            "bizType": "000201",
            "accessType": "0",
            "merId": txn["mer_id"],
            "orderId": txn["order_id"],
            "txnTime": txn["txn_time"],
            "txnType": txn["txn_type"],
            "txnSubType": "01" if txn["txn_type"] == "01" else "00",
            "txnAmt": str(txn["amount"]),
            "currencyCode": "156",
            "queryId": txn.get("query_id") or "",
            "traceNo": txn.get("trace_no") or "",
            "traceTime": txn.get("trace_time") or "",
            "settleAmt": str(txn["amount"]),
            "settleCurrencyCode": "156",
            "settleDate": (txn.get("settle_date") or "")[5:].replace("-", ""),
            "accNo": txn.get("acc_no") or "",
            "payCardType": txn.get("card_type") or "",
            "payCardIssueName": txn.get("issuer") or "",
            "payType": "0001",
            "reqReserved": txn.get("req_reserved") or "",
            "origQryId": txn.get("orig_query_id") or "",
        }
        return {k: v for k, v in fields.items() if v}

    def notification_fields(self, txn: Document) -> dict[str, str]:
        code, msg = ("00", "成功[0000000]") if txn["status"] == SUCCESS else (DECLINE_CODE, DECLINE_MSG)
        return self.signed({**self.result_fields(txn), "respCode": code, "respMsg": msg})

    def notify(self, txn: Document) -> None:
        url = txn.get("back_url")
        if not url:
            return

        def build() -> tuple[dict[str, str], bytes]:
            body = urlencode(self.notification_fields(txn)).encode()
            return {"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"}, body

        event_id = f"{txn['query_id']}:{txn['status']}"
        self.dispatcher.submit(
            NotificationJob(
                event_id=event_id, url=url, build=build, event_type=f"txnType{txn['txn_type']}", subject=txn["order_id"]
            )
        )

    # ------------------------------------------------------------------ settlement file
    def fee_of(self, amount: int) -> int:
        return (amount * self.settings.fee_rate_bps + 5000) // 10000

    def view(self, txn: Document) -> dict[str, Any]:
        return {k: v for k, v in txn.items() if k not in ("unknown_left",)}
