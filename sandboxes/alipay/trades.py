"""The sandbox's trade book: Alipay's trade state machine, kept in the shared DocumentStore.

States (docs/protocols/alipay.md §5):
    UNSEEN ──scan──▶ WAIT_BUYER_PAY ──pay──▶ TRADE_SUCCESS ──full refund / cancel──▶ TRADE_CLOSED
       └─cancel─▶ TRADE_CLOSED ◀──close / cancel / decline / time_expire──┘      └──finish──▶ TRADE_FINISHED
`UNSEEN` is the sandbox's own word for a precreated QR trade nobody scanned yet: to the outside it
does not exist (query/close/refund answer ACQ.TRADE_NOT_EXIST), exactly like Alipay. Page, wap and
app trades start at WAIT_BUYER_PAY when the buyer opens the cashier (or the app).

Every state change emits an event (for the notification sender) after it is stored.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sandboxes.common.store import DocumentStore

BEIJING = timezone(timedelta(hours=8), name="Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_CANONICAL_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")
TRADES = "trades"
APPS = "apps"

UNSEEN = "UNSEEN"
WAIT_BUYER_PAY = "WAIT_BUYER_PAY"
TRADE_SUCCESS = "TRADE_SUCCESS"
TRADE_CLOSED = "TRADE_CLOSED"
TRADE_FINISHED = "TRADE_FINISHED"  # paid and no longer refundable (refund window over); final

AMOUNT_MAX_FEN = 100_000_000 * 100
OUT_TRADE_NO = re.compile(r"^[A-Za-z0-9_]{1,64}$")
OUT_REQUEST_NO = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
YUAN = re.compile(r"^(0|[1-9][0-9]{0,8})(\.[0-9]{1,2})?$")
TIMEOUT_EXPRESS = re.compile(r"^([1-9][0-9]{0,4})([mhd])$|^1c$")
SUBJECT_MAX_CHARS = 256
REFUNDS_PER_TRADE_MAX = 50  # Alipay caps partial refunds per trade

DEFAULT_BUYER_ID = "2088102177846880"
DEFAULT_BUYER_LOGON_ID = "cjq***@sandbox.com"

PRODUCT_CODES = {
    "alipay.trade.precreate": "FACE_TO_FACE_PAYMENT",
    "alipay.trade.page.pay": "FAST_INSTANT_TRADE_PAY",
    "alipay.trade.wap.pay": "QUICK_WAP_WAY",
    "alipay.trade.app.pay": "QUICK_MSECURITY_PAY",
    "alipay.trade.pay": "FACE_TO_FACE_PAYMENT",  # 付款码 (bar_code)
    "alipay.trade.create": "JSAPI_PAY",  # JSAPI / mini-program
}
PRODUCT_CODE_OPTIONAL = frozenset({"alipay.trade.precreate", "alipay.trade.pay", "alipay.trade.create"})
# Other product codes Alipay accepts per method: many live integrations and python-alipay-sdk send
# QUICK_WAP_PAY for wap pay (docs/protocols/alipay.md §11).
PRODUCT_CODE_ALIASES = {
    "alipay.trade.wap.pay": frozenset({"QUICK_WAP_PAY"}),
    "alipay.trade.create": frozenset({"FACE_TO_FACE_PAYMENT"}),
}


class BizError(Exception):
    """An Alipay business refusal: rendered as the method's node with code/msg/sub_code/sub_msg."""

    def __init__(self, sub_code: str, sub_msg: str, *, code: str = "40004", msg: str = "Business Failed") -> None:
        super().__init__(f"{code} {sub_code}: {sub_msg}")
        self.code = code
        self.msg = msg
        self.sub_code = sub_code
        self.sub_msg = sub_msg


def invalid(sub_msg: str) -> BizError:
    return BizError("ACQ.INVALID_PARAMETER", sub_msg)


def parse_yuan(value: Any, field_name: str, *, allow_zero: bool = False) -> int:
    """Strict Alipay amount within [0.01, 100000000], at most 2 decimals: a string (`"88.88"`) or a JSON
    number (`88.88`, as Alipay's own examples send it; docs/protocols/alipay.md §11). JSON numbers arrive as the
    Decimal of their exact JSON text (`biz_content` is parsed with parse_float=Decimal), never a float,
    so `88.88` is 8888 fen exactly and `88.885` is refused, not rounded."""
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        value = str(value)  # the JSON text itself; an exponent (1E+2) or a sign fails the pattern below
    if not isinstance(value, str) or YUAN.fullmatch(value) is None:
        raise invalid(f"{field_name} must be a yuan string with at most 2 decimals, got {value!r}")
    whole, _, decimals = value.partition(".")
    fen = int(whole) * 100 + int(decimals.ljust(2, "0"))
    if fen > AMOUNT_MAX_FEN or (fen < 1 and not allow_zero):
        raise invalid(f"{field_name} out of range [0.01, 100000000]: {value}")
    return fen


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def beijing(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime(TIME_FORMAT)


def parse_beijing(value: str) -> datetime | None:
    """`yyyy-MM-dd HH:mm:ss` (Beijing) as an aware datetime, or None: exactly what `strptime` with `TIME_FORMAT`
    accepts (sandboxes/alipay/tests/test_timestamps.py compares the two over edge cases and generated text).

    Every request's `timestamp` is parsed here. The form every SDK sends (two ASCII digits a field, one space) is read
    without `strptime` (~1 us instead of ~5 us: its lock, locale check and regex; docs/performance.md, "Seventh pass:
    the sandboxes"); in that form `strptime` accepts exactly the valid dates and times, which `datetime` checks the
    same way. Any other text is `strptime`'s to judge: it accepts more than the canonical form (one-digit fields,
    any run of whitespace for the space, non-ASCII digits)."""
    canonical = _CANONICAL_TIME.fullmatch(value)
    try:
        if canonical is not None:
            year, month, day, hour, minute, second = map(int, canonical.groups())
            return datetime(year, month, day, hour, minute, second, tzinfo=BEIJING)
        return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=BEIJING)
    except ValueError:
        return None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def from_iso(value: str | None) -> datetime | None:
    return None if not value else datetime.fromisoformat(value)


def new_trade_no(now: datetime) -> str:
    """28 digits like Alipay's: Beijing date, the `22001` channel marker, 15 random digits."""
    return now.astimezone(BEIJING).strftime("%Y%m%d") + "22001" + f"{secrets.randbelow(10**15):015d}"


def new_pid() -> str:
    return "2088" + f"{secrets.randbelow(10**12):012d}"


def new_app_id() -> str:
    return "2021" + f"{secrets.randbelow(10**12):012d}"


@dataclass(frozen=True, slots=True)
class TradeEvent:
    """Something a notification must report: a trade state change, or a refund on the trade."""

    trade: dict[str, Any]
    refund: dict[str, Any] | None = None


def _expire_at(biz: dict[str, Any], now: datetime) -> datetime | None:
    """time_expire (Beijing wall clock) or timeout_express (1m..15d, 1c = end of today), strictly."""
    time_expire = biz.get("time_expire")
    if time_expire is not None:
        moment = parse_beijing(time_expire) if isinstance(time_expire, str) else None
        if moment is None:
            raise invalid(f"time_expire must be yyyy-MM-dd HH:mm:ss, got {time_expire!r}")
        return moment
    express = biz.get("timeout_express")
    if express is None:
        return None
    match = TIMEOUT_EXPRESS.fullmatch(express) if isinstance(express, str) else None
    if match is None:
        raise invalid(f"timeout_express must be like 90m, 2h, 15d or 1c, got {express!r}")
    if express == "1c":
        local = now.astimezone(BEIJING)
        return datetime(local.year, local.month, local.day, tzinfo=BEIJING) + timedelta(days=1)
    amount, unit = int(match.group(1)), match.group(2)
    delta = {"m": timedelta(minutes=amount), "h": timedelta(hours=amount), "d": timedelta(days=amount)}[unit]
    if delta > timedelta(days=15):
        raise invalid("timeout_express longer than 15d")
    return now + delta


class TradeBook:
    def __init__(
        self,
        store: DocumentStore,
        *,
        on_event: Callable[[TradeEvent], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.on_event = on_event
        self.clock = clock

    # ------------------------------------------------------------------ lookups

    @staticmethod
    def key(app_id: str, out_trade_no: str) -> str:
        return f"{app_id}:{out_trade_no}"

    def _load(self, app_id: str, out_trade_no: str | None, trade_no: str | None) -> dict[str, Any] | None:
        if out_trade_no:
            doc = self.store.get(TRADES, self.key(app_id, out_trade_no))
            if doc is not None and trade_no and doc.get("trade_no") != trade_no:
                return None
            return doc
        if trade_no:
            for doc in self.store.find(TRADES, "trade_no", trade_no):
                if doc["app_id"] == app_id:
                    return doc
        return None

    def find_for_control(self, out_trade_no: str, app_id: str | None) -> dict[str, Any] | None:
        """The control API addresses trades by out_trade_no alone when that is unambiguous."""
        if app_id:
            doc = self.store.get(TRADES, self.key(app_id, out_trade_no))
            return None if doc is None else self._expire_if_due(doc)
        matches = self.store.find(TRADES, "out_trade_no", out_trade_no)
        if len(matches) > 1:
            raise LookupError("several apps have this out_trade_no; pass app_id")
        return self._expire_if_due(matches[0]) if matches else None

    def find_by_trade_no(self, trade_no: str) -> dict[str, Any] | None:
        for doc in self.store.find(TRADES, "trade_no", trade_no):
            return self._expire_if_due(doc)
        return None

    def existing(self, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
        """The trade named by out_trade_no / trade_no as Alipay sees it (UNSEEN does not exist)."""
        out_trade_no, trade_no = biz.get("out_trade_no"), biz.get("trade_no")
        if not out_trade_no and not trade_no:
            raise invalid("out_trade_no or trade_no is required")
        doc = self._load(app_id, out_trade_no, trade_no)
        if doc is not None:
            doc = self._expire_if_due(doc)
        if doc is None or doc["status"] == UNSEEN:
            raise BizError("ACQ.TRADE_NOT_EXIST", "交易不存在")
        return doc

    def list_for_app(self, app_id: str | None) -> list[dict[str, Any]]:
        return [d for d in self.store.list(TRADES) if app_id is None or d["app_id"] == app_id]

    # ------------------------------------------------------------------ creation

    def create(
        self,
        *,
        app_id: str,
        method: str,
        biz: dict[str, Any],
        notify_url: str | None,
        return_url: str | None,
    ) -> dict[str, Any]:
        """precreate / page / wap / app: create the trade, or return the same one for an identical retry."""
        out_trade_no = biz.get("out_trade_no")
        if not isinstance(out_trade_no, str) or OUT_TRADE_NO.fullmatch(out_trade_no) is None:
            raise invalid("out_trade_no must be 1-64 letters, digits or _")
        total_fen = parse_yuan(biz.get("total_amount"), "total_amount")
        subject = biz.get("subject")
        if not isinstance(subject, str) or not subject.strip() or len(subject) > SUBJECT_MAX_CHARS:
            raise invalid("subject is required (at most 256 characters)")
        product_code = biz.get("product_code")
        expected_product = PRODUCT_CODES[method]
        if method not in PRODUCT_CODE_OPTIONAL and product_code is None:
            raise invalid("product_code is required")
        if (
            product_code is not None
            and product_code != expected_product
            and product_code not in PRODUCT_CODE_ALIASES.get(method, frozenset())
        ):
            raise invalid(f"product_code must be {expected_product} for {method}")
        now = self.clock()
        expire_at = _expire_at(biz, now)
        extend_params = biz.get("extend_params")
        extend: dict[str, Any] = extend_params if isinstance(extend_params, dict) else {}
        document: dict[str, Any] = {
            "app_id": app_id,
            "out_trade_no": out_trade_no,
            "trade_no": new_trade_no(now),
            "method": method,
            "product_code": product_code or expected_product,
            "subject": subject,
            "body": biz.get("body") if isinstance(biz.get("body"), str) else None,
            "total_fen": total_fen,
            "status": UNSEEN if method == "alipay.trade.precreate" else WAIT_BUYER_PAY,
            "notify_url": notify_url,
            "return_url": return_url,
            "passback_params": biz.get("passback_params"),
            "royalty_freeze": str(extend.get("royalty_freeze", "")).lower() == "true",
            "qr_token": "bax" + secrets.token_hex(12),
            "created_at": _iso(now),
            "opened_at": None if method == "alipay.trade.precreate" else _iso(now),
            "expire_at": _iso(expire_at),
            "paid_at": None,
            "closed_at": None,
            "buyer_id": None,
            "buyer_logon_id": None,
            "refunded_fen": 0,
            "refunds": [],
        }
        key = self.key(app_id, out_trade_no)
        if self.store.insert_if_absent(TRADES, key, document):
            return document
        current = self.store.get(TRADES, key)  # a retry; trades are never deleted, so the insert's refusal is this one
        assert current is not None
        current = self._expire_if_due(current)
        if current["total_fen"] != total_fen or current["subject"] != subject or current["method"] != method:
            raise BizError("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改: out_trade_no reused with other details")
        if current["status"] == TRADE_SUCCESS:
            raise BizError("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
        if current["status"] == TRADE_CLOSED:
            raise BizError("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
        return current

    # ------------------------------------------------------------------ buyer side

    def scan(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The buyer scans the QR code (or opens the cashier): the trade now exists."""
        doc = self._expire_if_due(doc)
        opening = self._opening(doc)
        return self._put(doc, **opening) if opening else doc

    def _opening(self, doc: dict[str, Any]) -> dict[str, Any]:
        """What a scan changes on a trade whose expiry was applied: an unscanned QR trade opens, others are as they
        are (no change); an unscanned QR trade past its expiry cannot be scanned any more."""
        if doc["status"] != UNSEEN:
            return {}
        if doc.get("expired"):
            raise BizError("ACQ.TRADE_HAS_CLOSE", "二维码已过期")
        return {"status": WAIT_BUYER_PAY, "opened_at": _iso(self.clock())}

    def pay(
        self, doc: dict[str, Any], *, buyer_logon_id: str | None = None, buyer_id: str | None = None
    ) -> dict[str, Any]:
        """The buyer pays; an unscanned QR trade is scanned and paid in one write (the payer's approve of every
        payment: one document stored, not two; docs/performance.md, "Seventh pass: the sandboxes")."""
        doc = self._expire_if_due(doc)
        doc = {**doc, **self._opening(doc)}
        if doc["status"] != WAIT_BUYER_PAY:
            raise BizError("ACQ.TRADE_STATUS_ERROR", f"trade is {doc['status']}, not WAIT_BUYER_PAY")
        paid = self._put(
            doc,
            status=TRADE_SUCCESS,
            paid_at=_iso(self.clock()),
            buyer_id=buyer_id or doc.get("buyer_id") or DEFAULT_BUYER_ID,
            buyer_logon_id=buyer_logon_id or doc.get("buyer_logon_id") or DEFAULT_BUYER_LOGON_ID,
        )
        self.on_event(TradeEvent(trade=paid))
        return paid

    def decline(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The buyer gives up; the sandbox closes the trade at once instead of waiting for its timeout."""
        doc = self.scan(doc)
        return self.close(doc)

    # ------------------------------------------------------------------ merchant side

    def close(self, doc: dict[str, Any]) -> dict[str, Any]:
        if doc["status"] != WAIT_BUYER_PAY:
            raise BizError("ACQ.TRADE_STATUS_ERROR", f"交易状态不合法: {doc['status']}")
        closed = self._put(doc, status=TRADE_CLOSED, closed_at=_iso(self.clock()))
        self.on_event(TradeEvent(trade=closed))
        return closed

    def cancel(self, app_id: str, biz: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """alipay.trade.cancel: (trade, action). Unpaid (also a precreated QR nobody scanned) → closed,
        `close`; paid → fully refunded and closed, `refund`; already closed → `close` again (a retry)."""
        out_trade_no, trade_no = biz.get("out_trade_no"), biz.get("trade_no")
        if not out_trade_no and not trade_no:
            raise invalid("out_trade_no or trade_no is required")
        doc = self._load(app_id, out_trade_no, trade_no)
        if doc is None:
            raise BizError("ACQ.TRADE_NOT_EXIST", "交易不存在")
        doc = self._expire_if_due(doc)
        if doc["status"] in (UNSEEN, WAIT_BUYER_PAY):
            closed = self._put(doc, status=TRADE_CLOSED, closed_at=_iso(self.clock()), expired=True)
            if doc["status"] == WAIT_BUYER_PAY:
                self.on_event(TradeEvent(trade=closed))
            return closed, "close"
        if doc["status"] == TRADE_SUCCESS:
            remaining = doc["total_fen"] - doc["refunded_fen"]
            updated, _refund, _changed = self.refund(
                doc, {"refund_amount": yuan(remaining), "out_request_no": f"cancel_{doc['trade_no']}"}
            )
            return updated, "refund"
        if doc["status"] == TRADE_FINISHED:
            raise BizError("ACQ.TRADE_HAS_FINISHED", "交易已完结")
        return doc, "refund" if doc["refunded_fen"] else "close"

    def finish(self, doc: dict[str, Any]) -> dict[str, Any]:
        """TRADE_SUCCESS → TRADE_FINISHED (the refund window is over); notified like a payment."""
        if doc["status"] != TRADE_SUCCESS:
            raise BizError("ACQ.TRADE_STATUS_ERROR", f"trade is {doc['status']}, not TRADE_SUCCESS")
        finished = self._put(doc, status=TRADE_FINISHED, finished_at=_iso(self.clock()))
        self.on_event(TradeEvent(trade=finished))
        return finished

    def refund(self, doc: dict[str, Any], biz: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], bool]:
        """Return (trade, refund, fund_changed). Idempotent by out_request_no."""
        refund_fen = parse_yuan(biz.get("refund_amount"), "refund_amount")
        out_request_no = biz.get("out_request_no")
        if out_request_no is None:
            out_request_no = doc["out_trade_no"]  # Alipay's default: a single full refund
            if refund_fen != doc["total_fen"]:
                raise invalid("out_request_no is required for a partial refund")
        if not isinstance(out_request_no, str) or OUT_REQUEST_NO.fullmatch(out_request_no) is None:
            raise invalid("out_request_no must be 1-64 letters, digits, _ or -")
        with self.store.transaction():
            doc = self.store.get(TRADES, self.key(doc["app_id"], doc["out_trade_no"])) or doc
            for previous in doc["refunds"]:
                if previous["out_request_no"] == out_request_no:
                    if previous["amount_fen"] != refund_fen:
                        raise invalid("out_request_no already used with another refund_amount")
                    return doc, previous, False
            if doc["status"] == TRADE_CLOSED:
                raise BizError("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
            if doc["status"] == TRADE_FINISHED:
                raise BizError("ACQ.TRADE_HAS_FINISHED", "交易已完结")
            if doc["status"] != TRADE_SUCCESS:
                raise BizError("ACQ.TRADE_STATUS_ERROR", f"交易状态不合法: {doc['status']}")
            remaining = doc["total_fen"] - doc["refunded_fen"]
            if refund_fen > remaining:
                raise BizError("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", f"退款金额超限: remaining {yuan(remaining)}")
            if len(doc["refunds"]) >= REFUNDS_PER_TRADE_MAX:
                raise BizError("ACQ.REFUND_FEE_ERROR", "too many partial refunds on this trade")
            refund = {
                "out_request_no": out_request_no,
                "amount_fen": refund_fen,
                "reason": biz.get("refund_reason") if isinstance(biz.get("refund_reason"), str) else None,
                "refunded_at": _iso(self.clock()),
            }
            refunded = doc["refunded_fen"] + refund_fen
            changes: dict[str, Any] = {"refunds": [*doc["refunds"], refund], "refunded_fen": refunded}
            if refunded == doc["total_fen"]:
                changes.update(status=TRADE_CLOSED, closed_at=refund["refunded_at"])
            updated = self._put(doc, **changes)
        self.on_event(TradeEvent(trade=updated, refund=refund))
        return updated, refund, True

    # ------------------------------------------------------------------ internals

    def _put(self, doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
        updated = {**doc, **changes}
        self.store.put(TRADES, self.key(doc["app_id"], doc["out_trade_no"]), updated)
        return updated

    def _expire_if_due(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Apply time_expire lazily, on the next read after it passed."""
        expire_at = from_iso(doc.get("expire_at"))
        if expire_at is None or self.clock() < expire_at:
            return doc
        if doc["status"] == UNSEEN and not doc.get("expired"):
            return self._put(doc, expired=True)
        if doc["status"] == WAIT_BUYER_PAY:
            closed = self._put(doc, status=TRADE_CLOSED, closed_at=_iso(expire_at))
            self.on_event(TradeEvent(trade=closed))
            return closed
        return doc


def bill_window(bill_date: str) -> tuple[datetime, datetime, str]:
    """`yyyy-MM-dd` or `yyyy-MM` → the Beijing [start, end) window and the compact date for file names."""
    try:
        if len(bill_date) == 10:
            day = date.fromisoformat(bill_date)
            start = datetime(day.year, day.month, day.day, tzinfo=BEIJING)
            return start, start + timedelta(days=1), day.strftime("%Y%m%d")
        if len(bill_date) == 7:
            year, month = int(bill_date[:4]), int(bill_date[5:7])
            if bill_date[4] != "-":
                raise ValueError(bill_date)
            start = datetime(year, month, 1, tzinfo=BEIJING)
            end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=BEIJING)
            return start, end, f"{year:04d}{month:02d}"
    except ValueError:
        pass
    raise invalid(f"bill_date must be yyyy-MM-dd or yyyy-MM, got {bill_date!r}")
