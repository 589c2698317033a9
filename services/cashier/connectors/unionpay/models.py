"""UnionPay connector configuration, constants, and the conversions at the channel's edge.

UnionPay speaks integer fen strings (`txnAmt=8888`), Beijing wall-clock `yyyyMMddHHmmss` times and
`orderId`s of 8–40 letters and digits (no `-` or `_`). `merId + orderId + txnTime` identifies a
transaction, so every later call (query, refund) must repeat the exact `txnTime` of the transaction
it names. The connector interface passes only the order number, so the connector derives `txnTime`
from the order number itself: Juhe's order numbers are UUIDv7s (attempt ids, refund ids), whose
first 48 bits are the creation time in Unix milliseconds. The same number always yields the same
`txnTime`, across processes and restarts, with nothing stored.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

from pydantic import BaseModel, ConfigDict, Field, SecretStr

PRODUCTION_BASE_URL = "https://gateway.95516.com"
TEST_BASE_URL = "https://gateway.test.95516.com"
FRONT_PATH = "/gateway/api/frontTransReq.do"
BACK_PATH = "/gateway/api/backTransReq.do"
QUERY_PATH = "/gateway/api/queryTrans.do"
APP_PATH = "/gateway/api/appTransReq.do"
FILE_PATH = "/gateway/api/fileTransRequest.do"

VERSION = "5.1.0"
ENCODING = "UTF-8"
SIGN_METHOD_RSA = "01"
CURRENCY_CODE_CNY = "156"
BIZ_TYPE_B2C = "000201"  # B2C gateway payment
BIZ_TYPE_NONE = "000000"  # query, key update, file transfer
ACCESS_TYPE_MERCHANT = "0"  # merchant direct access
CHANNEL_PC = "07"
CHANNEL_MOBILE = "08"

TXN_QUERY = "00"
TXN_CONSUME = "01"
TXN_REFUND = "04"
TXN_REVOKE = "31"
TXN_FILE = "76"
TXN_KEY_UPDATE = "95"

RESP_SUCCESS = "00"
RESP_UNKNOWN = frozenset({"03", "04", "05"})  # outcome unknown / still processing: query again later
RESP_NO_SUCH_TXN = "34"

AMOUNT_MIN_FEN = 1
AMOUNT_MAX_FEN = 10**12 - 1  # txnAmt is at most 12 digits

BEIJING = timezone(timedelta(hours=8), name="Asia/Shanghai")  # no DST since 1991
TIME_FORMAT = "%Y%m%d%H%M%S"
_ORDER_ID = re.compile(r"^[0-9A-Za-z]{8,40}$")


class UnionPayConfig(BaseModel):
    """One merchant (`merId`) on UnionPay online payment, with its PFX and UnionPay's trust anchors.

    `validate_cn_name` is the official SDK's `acpsdk.ifValidateCNName`: True (production) accepts only
    signing certificates whose CN identity is 中国银联股份有限公司; False also accepts the test
    environment's `00040000:SIGN` (set it for the test gateway and the sandbox, never in production).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = PRODUCTION_BASE_URL
    file_base_url: str | None = None  # production files come from filedownload.95516.com; None: base_url
    mer_id: str = Field(pattern=r"^[0-9A-Za-z]{15}$")
    sign_pfx_base64: SecretStr
    sign_pfx_password: SecretStr
    root_cert_pem: str
    middle_cert_pem: str
    validate_cn_name: bool = True
    encrypt_cert_pem: str | None = None  # from the key update transaction (txnType 95)
    # Juhe's refund numbers are `re_<UUIDv7 hex>`; UnionPay's orderId holds only the hex, so the settlement
    # file parser puts this prefix back to give settlement the refund's own number.
    refund_number_prefix: str = Field(default="re_", pattern=r"^[A-Za-z]{0,8}_?$")
    pay_timeout_minutes: int = Field(default=15, ge=1, le=24 * 60)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    read_timeout_seconds: float = Field(default=30.0, gt=0)


class AmountError(ValueError):
    """A txnAmt that is not an integer fen amount UnionPay accepts."""


def fen_to_txn_amt(amount_minor: int) -> str:
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise AmountError(f"amount must be int fen, got {type(amount_minor).__name__}")
    if not AMOUNT_MIN_FEN <= amount_minor <= AMOUNT_MAX_FEN:
        raise AmountError(f"amount out of range [1, {AMOUNT_MAX_FEN}] fen: {amount_minor}")
    return str(amount_minor)


def txn_amt_to_fen(value: str | None) -> int | None:
    """A txnAmt/settleAmt read from a response: plain digits, else None (never guessed)."""
    if not value or not value.isascii() or not value.isdigit() or len(value) > 13:
        return None
    return int(value)


def order_id_of(number: str) -> str:
    """The UnionPay `orderId` for a Juhe order number: its part after the last `_` (`re_<hex>` → `<hex>`)."""
    order_id = number.rpartition("_")[2]
    if not _ORDER_ID.fullmatch(order_id):
        raise ValueError(f"not a UnionPay orderId (8-40 letters and digits): {number!r}")
    return order_id


def txn_time_of(number: str) -> str:
    """The `txnTime` of a Juhe order number: the Beijing time of its UUIDv7 timestamp."""
    order_id = order_id_of(number)
    try:
        value = uuid.UUID(hex=order_id)
    except ValueError as exc:
        raise ValueError(f"order number {number!r} is not a UUIDv7: txnTime cannot be derived") from exc
    if value.version != 7:
        raise ValueError(f"order number {number!r} is not a UUIDv7: txnTime cannot be derived")
    millis = value.int >> 80
    return datetime.fromtimestamp(millis / 1000, UTC).astimezone(BEIJING).strftime(TIME_FORMAT)


def format_txn_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: UnionPay times must be built from aware datetimes")
    return moment.astimezone(BEIJING).strftime(TIME_FORMAT)


def parse_txn_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value.strip(), TIME_FORMAT).replace(tzinfo=BEIJING)
    except ValueError:
        return None


def parse_trace_time(value: str | None, txn_time: datetime | None) -> datetime | None:
    """`traceTime` is MMDDhhmmss without a year: take the year of the transaction time."""
    if not value or len(value) != 10 or not value.isdigit():
        return None
    year = (txn_time or datetime.now(BEIJING)).year
    try:
        moment = datetime.strptime(f"{year}{value}", TIME_FORMAT).replace(tzinfo=BEIJING)
    except ValueError:
        return None
    if txn_time is not None and moment < txn_time - timedelta(days=1):
        moment = moment.replace(year=year + 1)  # paid over New Year
    return moment
