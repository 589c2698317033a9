"""The e-CNY acquiring bank: merchants, orders paid from a wallet of level 1–4, refunds, the bill.

Wallet tiers (PBoC, as the e-CNY app shows them; fen: per payment, per day, balance):
level 1 unlimited; level 2 50 000 / 100 000 / 500 000 yuan; level 3 5 000 / 10 000 / 20 000 yuan;
level 4 2 000 / 5 000 / 10 000 yuan. A payment over the per-payment limit, or one that would take the
wallet's payments of the (China) day over the daily limit, is declined: the order FAILS with
`WALLET_LIMIT_EXCEEDED` and the merchant is notified. Each level has one demo wallet.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta, timezone

from sandboxes.common.notify import NotificationDispatcher, NotificationJob
from sandboxes.common.store import Document, DocumentStore
from sandboxes.ecny import crypto
from sandboxes.ecny.settings import EcnySettings

CHINA = timezone(timedelta(hours=8))
MERCHANTS, ORDERS, ORDER_NOS, REFUNDS, KEYS = "merchants", "orders", "order_nos", "refunds", "keys"
WALLET_LIMITS_FEN: dict[int, tuple[int | None, int | None, int | None]] = {
    1: (None, None, None),
    2: (5_000_000, 10_000_000, 50_000_000),
    3: (500_000, 1_000_000, 2_000_000),
    4: (200_000, 500_000, 1_000_000),
}


class BankError(Exception):
    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status_code, self.code, self.message = status_code, code, message


def now_iso() -> str:
    return datetime.now(UTC).astimezone(CHINA).isoformat(timespec="seconds")


def wallet_id(level: int) -> str:
    return f"00{level}{'0' * 12}{level}"


class EcnyBank:
    def __init__(self, settings: EcnySettings, store: DocumentStore, dispatcher: NotificationDispatcher) -> None:
        self.settings = settings
        self.store = store
        self.dispatcher = dispatcher
        if self.store.get(KEYS, "bank") is None:
            private, public = crypto.keypair()
            self.store.insert_if_absent(KEYS, "bank", {"private": private, "public": public})
        keys = self.store.get(KEYS, "bank")
        assert keys is not None
        self.private_hex, self.public_hex = str(keys["private"]), str(keys["public"])

    # ------------------------------------------------------------------ merchants and signatures
    def register_merchant(self, merchant_id: str | None, public_key_hex: str | None) -> Document:
        mid = merchant_id or f"EC{secrets.randbelow(10**12):012d}"
        private = None
        if public_key_hex is None:
            private, public_key_hex = crypto.keypair()
        merchant = {"merchant_id": mid, "public_key_hex": public_key_hex, "sm4_key_hex": secrets.token_hex(16)}
        self.store.put(MERCHANTS, mid, merchant)
        answer = {
            "merchant_id": mid,
            "merchant_public_key_hex": public_key_hex,
            "bank_public_key_hex": self.public_hex,
            "sm4_key_hex": merchant["sm4_key_hex"],
        }
        if private:
            answer["merchant_private_key_hex"] = private
        return answer

    def authenticate(self, merchant_id: str, method: str, path: str, body: bytes, headers: dict[str, str]) -> Document:
        merchant = self.store.get(MERCHANTS, merchant_id)
        timestamp = headers.get("ecny-timestamp", "")
        nonce, signature = headers.get("ecny-nonce", ""), headers.get("ecny-signature", "")
        if merchant is None or not timestamp.isdigit() or not nonce:
            raise BankError(401, "SIGN_ERROR", "unknown merchant or missing signature headers")
        if abs(int(datetime.now(UTC).timestamp()) - int(timestamp)) > self.settings.clock_skew_seconds_max:
            raise BankError(401, "SIGN_ERROR", "timestamp outside the allowed window")
        content = f"{method}\n{path}\n{timestamp}\n{nonce}\n{crypto.sm3_hex(body)}\n".encode()
        if not crypto.verify(merchant["public_key_hex"], signature, content):
            raise BankError(401, "SIGN_ERROR", "SM2 signature check failed")
        return merchant

    def sign_headers(self, body: bytes) -> dict[str, str]:
        timestamp, nonce = str(int(datetime.now(UTC).timestamp())), secrets.token_hex(16)
        content = f"{timestamp}\n{nonce}\n{crypto.sm3_hex(body)}\n".encode()
        signature = crypto.sign(self.private_hex, self.public_hex, content)
        return {"Ecny-Timestamp": timestamp, "Ecny-Nonce": nonce, "Ecny-Signature": signature}

    # ------------------------------------------------------------------ orders
    def create_order(self, merchant_id: str, body: Document, base_url: str) -> Document:
        key = f"{merchant_id}:{body['out_trade_no']}"
        request = {
            k: body.get(k)
            for k in (
                "out_trade_no",
                "amount_minor",
                "currency",
                "description",
                "scene",
                "notify_url",
                "return_url",
                "attach",
                "expire_seconds",
            )
        }
        order_no = f"EC{datetime.now(CHINA):%Y%m%d%H%M%S}{secrets.randbelow(10**8):08d}"
        expire_at = datetime.now(UTC) + timedelta(seconds=int(body.get("expire_seconds") or 900))
        order = {
            **request,
            "merchant_id": merchant_id,
            "order_no": order_no,
            "status": "PENDING",
            "created_at": now_iso(),
            "expire_at": expire_at.isoformat(),
            "paid_at": None,
            "failure_code": None,
            "wallet_level": None,
            "wallet_id": None,
            "refunded": 0,
            "request": request,
            "finished_at": None,
        }
        if self.store.insert_if_absent(ORDERS, key, order):
            self.store.put(ORDER_NOS, order_no, {"key": key})
        else:
            existing = self.store.get(ORDERS, key)
            assert existing is not None
            if existing["request"] != request:
                raise BankError(409, "ORDER_NO_USED", "out_trade_no was used with another request")
            order = existing
        link = f"{base_url.rstrip('/')}/pay/wallet/{order['order_no']}"
        return {
            **self.view(order),
            "qr_code": link,
            "h5_url": f"{link}?h5=1",
            "deep_link": f"ecny://pay?order_no={order['order_no']}",
        }

    def get_order(self, merchant_id: str, out_trade_no: str) -> Document:
        key = f"{merchant_id}:{out_trade_no}"
        order = self.store.get(ORDERS, key)
        if order is None:
            raise BankError(404, "ORDER_NOT_FOUND", f"no order {out_trade_no}")
        if order["status"] == "PENDING" and datetime.fromisoformat(order["expire_at"]) < datetime.now(UTC):
            order = self._finish(key, "CLOSED", "ORDER_EXPIRED")
        return order

    def by_order_no(self, order_no: str) -> Document | None:
        ref = self.store.get(ORDER_NOS, order_no)
        if ref is None:
            return None
        merchant_id, _, out_trade_no = str(ref["key"]).partition(":")
        return self.get_order(merchant_id, out_trade_no)

    def close(self, merchant_id: str, out_trade_no: str) -> Document:
        order = self.get_order(merchant_id, out_trade_no)
        if order["status"] == "SUCCEEDED":
            raise BankError(409, "ORDER_PAID", "the order is paid; refund it instead")
        if order["status"] == "PENDING":
            order = self._finish(f"{merchant_id}:{out_trade_no}", "CLOSED", "MERCHANT_CLOSED", notify=False)
        return order

    def _spent_today(self, wallet: str) -> int:
        today = datetime.now(CHINA).date()
        return sum(
            int(o["amount_minor"])
            for o in self.store.list(ORDERS)
            if o.get("wallet_id") == wallet
            and o["status"] == "SUCCEEDED"
            and datetime.fromisoformat(o["paid_at"]).astimezone(CHINA).date() == today
        )

    def pay(self, order: Document, level: int) -> Document:
        """The payer confirms in the wallet app with a wallet of `level`: SUCCEEDED, or FAILED over a limit."""
        if level not in WALLET_LIMITS_FEN:
            raise BankError(400, "PARAM_ERROR", "wallet_level must be 1..4")
        if order["status"] != "PENDING":
            raise BankError(409, "ORDER_STATUS_ERROR", f"the order is {order['status']}")
        single, daily, _balance = WALLET_LIMITS_FEN[level]
        wallet = wallet_id(level)
        amount = int(order["amount_minor"])
        key = f"{order['merchant_id']}:{order['out_trade_no']}"
        over_single = single is not None and amount > single
        if over_single or (daily is not None and self._spent_today(wallet) + amount > daily):
            return self._finish(key, "FAILED", "WALLET_LIMIT_EXCEEDED", wallet=(level, wallet))
        return self._finish(key, "SUCCEEDED", None, wallet=(level, wallet))

    def decline(self, order: Document) -> Document:
        if order["status"] != "PENDING":
            raise BankError(409, "ORDER_STATUS_ERROR", f"the order is {order['status']}")
        return self._finish(f"{order['merchant_id']}:{order['out_trade_no']}", "FAILED", "PAYER_DECLINED")

    def _finish(
        self,
        key: str,
        status: str,
        failure_code: str | None,
        *,
        wallet: tuple[int, str] | None = None,
        notify: bool = True,
    ) -> Document:
        def change(doc: Document) -> Document:
            if doc["status"] != "PENDING":
                raise BankError(409, "ORDER_STATUS_ERROR", f"the order is {doc['status']}")
            done = {**doc, "status": status, "failure_code": failure_code, "finished_at": now_iso()}
            if wallet:
                done.update(wallet_level=wallet[0], wallet_id=wallet[1])
            if status == "SUCCEEDED":
                done["paid_at"] = done["finished_at"]
            return done

        order = self.store.update(ORDERS, key, change)
        if notify:
            self._notify(f"order.{status.lower()}", order, order.get("notify_url"))
        return order

    def view(self, order: Document) -> Document:
        out = {
            k: order.get(k)
            for k in (
                "merchant_id",
                "out_trade_no",
                "order_no",
                "status",
                "amount_minor",
                "currency",
                "created_at",
                "paid_at",
                "failure_code",
                "wallet_level",
                "attach",
                "refunded",
            )
        }
        merchant = self.store.get(MERCHANTS, order["merchant_id"])
        if order.get("wallet_id") and merchant:
            out["payer_wallet_enc"] = crypto.sm4_encrypt(merchant["sm4_key_hex"], order["wallet_id"])
        out["refunded_minor"] = out.pop("refunded")
        return {k: v for k, v in out.items() if v is not None}

    # ------------------------------------------------------------------ refunds
    def refund(self, merchant_id: str, body: Document) -> Document:
        key = f"{merchant_id}:{body['out_refund_no']}"
        existing = self.store.get(REFUNDS, key)
        request = {k: body.get(k) for k in ("out_trade_no", "out_refund_no", "amount_minor", "currency")}
        if existing is not None:
            if existing["request"] != request:
                raise BankError(409, "REFUND_NO_USED", "out_refund_no was used with another request")
            return existing
        order = self.get_order(merchant_id, str(body["out_trade_no"]))
        if order["status"] != "SUCCEEDED":
            raise BankError(409, "ORDER_NOT_PAID", f"the order is {order['status']}")
        amount = int(body["amount_minor"])

        def take(doc: Document) -> Document:
            if doc["refunded"] + amount > doc["amount_minor"]:
                raise BankError(409, "REFUND_AMOUNT_EXCEEDED", "refunds would exceed the paid amount")
            return {**doc, "refunded": doc["refunded"] + amount}

        self.store.update(ORDERS, f"{merchant_id}:{order['out_trade_no']}", take)
        refund = {
            **request,
            "merchant_id": merchant_id,
            "refund_no": f"ER{secrets.randbelow(10**18):018d}",
            "order_no": order["order_no"],
            "status": "SUCCEEDED",
            "finished_at": now_iso(),
            "notify_url": body.get("notify_url"),
            "request": request,
        }
        self.store.put(REFUNDS, key, refund)
        self._notify("refund.succeeded", refund, refund.get("notify_url"))
        return refund

    def get_refund(self, merchant_id: str, out_refund_no: str) -> Document:
        refund = self.store.get(REFUNDS, f"{merchant_id}:{out_refund_no}")
        if refund is None:
            raise BankError(404, "REFUND_NOT_FOUND", f"no refund {out_refund_no}")
        return refund

    @staticmethod
    def refund_view(refund: Document) -> Document:
        return {
            k: refund[k]
            for k in (
                "merchant_id",
                "out_trade_no",
                "out_refund_no",
                "refund_no",
                "order_no",
                "amount_minor",
                "currency",
                "status",
                "finished_at",
            )
        }

    # ------------------------------------------------------------------ notifications
    def _notify(self, event: str, doc: Document, url: str | None) -> None:
        if not url:
            return
        data = self.refund_view(doc) if event.startswith("refund.") else self.view(doc)
        body = json.dumps({"event": event, "data": data}, ensure_ascii=False, separators=(",", ":")).encode()

        def build() -> tuple[dict[str, str], bytes]:
            return {"Content-Type": "application/json", **self.sign_headers(body)}, body

        subject = str(doc.get("out_refund_no") or doc["out_trade_no"])
        self.dispatcher.submit(
            NotificationJob(event_id=f"{event}:{subject}", url=url, build=build, event_type=event, subject=subject)
        )
