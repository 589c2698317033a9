"""Alipay connector configuration, constants and the yuan ↔ fen conversion.

Alipay speaks yuan decimal strings ("88.88") and Beijing wall-clock times ("2024-01-02 15:04:05");
the rest of Juhe speaks integer fen and timezone-aware datetimes. Everything that crosses that edge
goes through the helpers here so the conversion is written (and tested) once.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from services.cashier.connectors.alipay.certificates import alipay_public_key_pem
from services.cashier.connectors.base import ChannelDiscount, TradeStatus

PRODUCTION_GATEWAY_URL = "https://openapi.alipay.com/gateway.do"
SANDBOX_GATEWAY_URL = "https://openapi-sandbox.dl.alipaydev.com/gateway.do"

# China has had no daylight saving time since 1991, so a fixed +08:00 offset is exact and avoids a
# dependency on the host's tz database.
BEIJING = timezone(timedelta(hours=8), name="Asia/Shanghai")
ALIPAY_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

AMOUNT_MIN_FEN = 1  # 0.01 yuan
AMOUNT_MAX_FEN = 100_000_000 * 100  # 100000000 yuan, Alipay's documented upper bound

# Alipay only settles trades in CNY on the domestic OpenAPI.
SUPPORTED_CURRENCY = "CNY"

_STRICT_YUAN = re.compile(r"^(0|[1-9][0-9]{0,8})(?:\.([0-9]{1,2}))?$")
_LOOSE_DECIMAL = re.compile(r"^([+-]?)([0-9]*)(?:\.([0-9]*))?$")


class AlipayConfig(BaseModel):
    """One merchant credential set on the Alipay OpenAPI, public-key or certificate mode.

    The app private key signs requests; the Alipay public key checks responses, notifications and
    return redirects. Certificate mode (§2.7, required for transfers) is on when `app_cert_pem` is
    given, with `alipay_cert_pem` and `alipay_root_cert_pem`: requests then carry `app_cert_sn` and
    `alipay_root_cert_sn`, the Alipay public key is taken from `alipay_cert_pem`, and a reply naming
    another `alipay_cert_sn` is refused (Alipay rotated its certificate: download the new one).
    """

    model_config = ConfigDict(frozen=True)

    gateway_url: str = PRODUCTION_GATEWAY_URL
    app_id: str
    app_private_key_pem: SecretStr
    alipay_public_key_pem: str
    seller_id: str | None = None  # the merchant PID (2088…); checked on notifications when set
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    read_timeout_seconds: float = Field(default=15.0, gt=0)
    bill_download_timeout_seconds: float = Field(default=60.0, gt=0)
    bill_size_max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    app_auth_token: str | None = None  # ISV mode: act on behalf of an authorised merchant
    app_cert_pem: str | None = None
    alipay_cert_pem: str | None = None
    alipay_root_cert_pem: str | None = None
    # Where the payer's app authorises the merchant's page (connectors/alipay/oauth.py); None: production's
    # openauth.alipay.com, or the gateway's origin when `gateway_url` is a sandbox's.
    oauth_authorize_url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _certificate_mode(cls, data: Any) -> Any:
        """Certificate mode: all three certificates, and the Alipay key comes from its certificate."""
        if not isinstance(data, dict):
            return data
        certs = [data.get(name) for name in ("app_cert_pem", "alipay_cert_pem", "alipay_root_cert_pem")]
        if any(certs) and not all(certs):
            raise ValueError("certificate mode needs app_cert_pem, alipay_cert_pem and alipay_root_cert_pem")
        if all(certs):
            derived, _sn = alipay_public_key_pem(str(data["alipay_cert_pem"]))
            if data.get("alipay_public_key_pem") and data["alipay_public_key_pem"].strip() != derived.strip():
                raise ValueError("alipay_public_key_pem differs from the key in alipay_cert_pem")
            data = {**data, "alipay_public_key_pem": derived}
        return data

    @property
    def certificate_mode(self) -> bool:
        return self.app_cert_pem is not None


class AmountError(ValueError):
    """A yuan string that is not a valid Alipay amount."""


def yuan_to_fen(value: str) -> int:
    """Parse an Alipay amount string strictly: plain digits, at most 2 decimals, within [0.01, 1e8].

    Integer arithmetic only: "88.88" → 8888. Rejects signs, exponents, spaces, more than 2 decimals
    and out-of-range values, because a request or response amount outside those rules is a bug or a
    forgery, never something to round.
    """
    match = _STRICT_YUAN.fullmatch(value)
    if match is None:
        raise AmountError(f"not a yuan amount: {value!r}")
    whole, decimals = match.group(1), match.group(2) or ""
    fen = int(whole) * 100 + int(decimals.ljust(2, "0") or "0")
    if not AMOUNT_MIN_FEN <= fen <= AMOUNT_MAX_FEN:
        raise AmountError(f"amount out of range [0.01, 100000000]: {value!r}")
    return fen


def fen_to_yuan(amount_minor: int) -> str:
    """Format fen as Alipay's yuan string with exactly 2 decimals: 8888 → "88.88"."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise AmountError(f"amount must be int fen, got {type(amount_minor).__name__}")
    if not AMOUNT_MIN_FEN <= amount_minor <= AMOUNT_MAX_FEN:
        raise AmountError(f"amount out of range [1, {AMOUNT_MAX_FEN}] fen: {amount_minor}")
    return f"{amount_minor // 100}.{amount_minor % 100:02d}"


def signed_decimal_to_fen(value: str) -> int:
    """Parse a bill-file money cell ("-0.01", "0.04000", "", "12") to fen, rounding half away from zero.

    Bill files are more varied than API fields (negative refunds, fees with more decimals, empty
    cells), so this parser is deliberately tolerant; API amounts use the strict `yuan_to_fen`.
    """
    text = value.strip().replace(",", "")
    if text in ("", "-", "+"):
        return 0
    match = _LOOSE_DECIMAL.fullmatch(text)
    if match is None or (not match.group(2) and not match.group(3)):
        raise AmountError(f"not a decimal amount: {value!r}")
    sign = -1 if match.group(1) == "-" else 1
    whole = int(match.group(2) or "0")
    decimals = match.group(3) or ""
    fen = whole * 100 + int(decimals[:2].ljust(2, "0"))
    rest = decimals[2:]
    if rest and int(rest[0]) >= 5:
        fen += 1
    return sign * fen


def format_beijing(moment: datetime) -> str:
    """A timezone-aware datetime as Alipay's Beijing wall-clock string."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: Alipay times must be built from aware datetimes")
    return moment.astimezone(BEIJING).strftime(ALIPAY_TIME_FORMAT)


def parse_beijing(value: str | None) -> datetime | None:
    """Alipay's "yyyy-MM-dd HH:mm:ss" Beijing time as an aware datetime; None for empty/garbled input."""
    if not value:
        return None
    text = value.strip()
    for fmt in (ALIPAY_TIME_FORMAT, "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=BEIJING)
        except ValueError:
            continue
    return None


def map_trade_status(trade_status: str | None, *, paid: bool) -> TradeStatus:
    """Alipay trade_status → the cashier's TradeStatus.

    TRADE_CLOSED means either "closed unpaid" or "paid, then fully refunded"; the latter is still a
    succeeded payment for the cashier (refunds are tracked separately), so `paid` (a payment time is
    present) decides. Unknown words map to PENDING so the cashier keeps polling rather than guessing.
    """
    match trade_status:
        case "TRADE_SUCCESS" | "TRADE_FINISHED":
            return TradeStatus.SUCCEEDED
        case "TRADE_CLOSED":
            return TradeStatus.SUCCEEDED if paid else TradeStatus.CLOSED
        case _:
            return TradeStatus.PENDING


def response_yuan_to_fen(value: object) -> int | None:
    """A yuan amount read from an Alipay response or notification; None when absent or unreadable.

    Tolerant on purpose (the connector is the lenient side): accepts "0.00", JSON numbers (which the
    client parses as strings to avoid floats) and integers. Requests use the strict `fen_to_yuan`.
    """
    if value is None or isinstance(value, bool) or value == "":
        return None
    if isinstance(value, int):
        return value * 100
    try:
        return signed_decimal_to_fen(str(value))
    except AmountError:
        return None


def voucher_discounts(vouchers: object) -> tuple[ChannelDiscount, ...]:
    """`voucher_detail_list` (a list in a query, a JSON string in a notification; docs/protocols/alipay.md §12): the
    merchant's contribution is not received by the merchant (`receipt_amount` leaves it out), the rest
    (Alipay's, a third party's) is the channel's. Tolerant: unreadable entries are ignored."""
    if isinstance(vouchers, str):
        try:
            vouchers = json.loads(vouchers)
        except ValueError:
            return ()
    found = []
    for entry in vouchers if isinstance(vouchers, list) else []:
        if not isinstance(entry, dict) or not entry.get("id"):
            continue
        amount = response_yuan_to_fen(entry.get("amount")) or 0
        if amount <= 0:
            continue
        merchant = min(max(response_yuan_to_fen(entry.get("merchant_contribute")) or 0, 0), amount)
        found.append(
            ChannelDiscount(
                coupon_id=str(entry["id"]),
                amount_minor=amount,
                channel_minor=amount - merchant,
                merchant_minor=merchant,
                unsettled_minor=merchant,
                stock_id=str(entry["template_id"]) if entry.get("template_id") else None,
                kind=str(entry["type"]) if entry.get("type") else None,
            )
        )
    return tuple(found)
