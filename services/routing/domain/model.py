"""The nouns of routing: payment methods, scenes, acquiring routes, merchant contracts, payment context.

A *route* is one way to take a payment of one method: e.g. WeChat Pay JSAPI through our own WeChat Pay
merchant number (direct), through a service provider (服务商模式), or through a third-party acquirer
(Allinpay, Lianlian, UnionPay merchant services). The cashier holds the connector named by the route and
the credentials named by `config_ref`; routing only names them and never calls a channel.

Times: rules and opening hours are written in the platform's local wall-clock time. China has no
daylight saving, so a fixed UTC offset (default +08:00) is exact and needs no tz database.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from services.routing.domain.errors import FieldError

ROUTE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
INDUSTRY_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,31}$")
MERCHANT_ID_MAX_LENGTH = 64
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
MINUTES_PER_DAY = 24 * 60
DEFAULT_UTC_OFFSET_MINUTES = 8 * 60  # Asia/Shanghai


class Method(enum.StrEnum):
    WECHAT = "wechat"
    ALIPAY = "alipay"
    UNIONPAY = "unionpay"
    ECNY = "ecny"
    WALLET = "wallet"


class Scene(enum.StrEnum):
    """The product / checkout scene. A superset of the cashier connector's scenes."""

    NATIVE_QR = "native_qr"
    JSAPI = "jsapi"
    MINI_PROGRAM = "mini_program"
    APP = "app"
    H5 = "h5"
    PAGE = "page"
    BARCODE = "barcode"  # payer shows a code, merchant scans (付款码)
    QUICK = "quick"  # bank-card quick pay (快捷支付)
    B2B = "b2b"  # corporate online banking (企业网银)


class PayerClient(enum.StrEnum):
    """Where the payer is: decides which products can work (JSAPI needs WeChat's in-app browser)."""

    WECHAT = "wechat"
    ALIPAY = "alipay"
    OTHER = "other"


class RouteKind(enum.StrEnum):
    DIRECT = "direct"  # the platform's own merchant number at WeChat Pay / Alipay
    SERVICE_PROVIDER = "service_provider"  # WeChat/Alipay service-provider (服务商) mode
    ACQUIRER = "acquirer"  # a third-party acquirer: UnionPay merchant services, Allinpay, Lianlian…


@dataclass(frozen=True, slots=True)
class LocalTime:
    """A moment seen on the platform's wall clock."""

    date: date
    weekday: int  # ISO: Monday=1 … Sunday=7
    minute_of_day: int

    @classmethod
    def of(cls, at: datetime, utc_offset_minutes: int = DEFAULT_UTC_OFFSET_MINUTES) -> LocalTime:
        if at.tzinfo is None:
            raise ValueError("routing needs timezone-aware datetimes")
        local = at.astimezone(timezone(timedelta(minutes=utc_offset_minutes)))
        return cls(local.date(), local.isoweekday(), local.hour * 60 + local.minute)


def parse_hhmm(value: str) -> int:
    """'08:30' → 510. '24:00' is allowed (end of day). Raises ValueError otherwise."""
    match = re.fullmatch(r"(\d{2}):(\d{2})", value)
    if not match:
        raise ValueError(f"expected HH:MM, got {value!r}")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"not a time of day: {value!r}")
    return hours * 60 + minutes


def format_hhmm(minute_of_day: int) -> str:
    return f"{minute_of_day // 60:02d}:{minute_of_day % 60:02d}"


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A daily window [start, end) in local minutes; end < start wraps past midnight (22:00–06:00).

    `weekdays` (ISO 1–7) restricts the days; for a wrapping window the weekday is the day it starts,
    so "Friday 22:00–02:00" covers Saturday 01:00 too.
    """

    start_minute: int
    end_minute: int
    weekdays: frozenset[int] | None = None

    def contains(self, local: LocalTime) -> bool:
        minute = local.minute_of_day
        if self.start_minute < self.end_minute:
            return self.start_minute <= minute < self.end_minute and self._day_ok(local.weekday)
        if minute >= self.start_minute:
            return self._day_ok(local.weekday)
        if minute < self.end_minute:
            return self._day_ok(7 if local.weekday == 1 else local.weekday - 1)
        return False

    def _day_ok(self, weekday: int) -> bool:
        return self.weekdays is None or weekday in self.weekdays

    def validate(self, path: str) -> list[FieldError]:
        errors: list[FieldError] = []
        if not 0 <= self.start_minute < MINUTES_PER_DAY:
            errors.append(FieldError(f"{path}.start", "must be between 00:00 and 23:59"))
        if not 0 < self.end_minute <= MINUTES_PER_DAY:
            errors.append(FieldError(f"{path}.end", "must be between 00:01 and 24:00"))
        if self.start_minute == self.end_minute:
            errors.append(FieldError(path, "start and end are equal; omit the window for all day"))
        if self.weekdays is not None and (not self.weekdays or not self.weekdays <= set(range(1, 8))):
            errors.append(FieldError(f"{path}.weekdays", "must be a non-empty subset of 1 (Mon) … 7 (Sun)"))
        return errors

    def describe(self) -> str:
        days = "" if self.weekdays is None else " on days " + ",".join(str(d) for d in sorted(self.weekdays))
        return f"{format_hhmm(self.start_minute)}–{format_hhmm(self.end_minute)}{days}"

    def as_dict(self) -> dict[str, object]:
        return {
            "start": format_hhmm(self.start_minute),
            "end": format_hhmm(self.end_minute),
            "weekdays": None if self.weekdays is None else sorted(self.weekdays),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> TimeWindow:
        weekdays = raw.get("weekdays")
        return cls(
            parse_hhmm(str(raw["start"])),
            parse_hhmm(str(raw["end"])),
            None if weekdays is None else frozenset(int(d) for d in weekdays),  # type: ignore[attr-defined]
        )


@dataclass(frozen=True, slots=True)
class Route:
    """One acquiring route for one payment method and a set of scenes."""

    route_id: str
    method: Method
    scenes: frozenset[Scene]
    kind: RouteKind
    provider: str  # who acquires: "wechatpay", "alipay", "allinpay", "lianlian", "unionpay"…
    connector: str  # the cashier connector that speaks this route's protocol
    config_ref: str  # names the connector configuration/credentials held by the cashier (never secrets)
    currency: str = "CNY"
    enabled: bool = True
    amount_min_minor: int = 1
    amount_max_minor: int | None = None
    daily_volume_cap_minor: int | None = None  # succeeded volume per local day
    opening_hours: tuple[TimeWindow, ...] = ()  # empty = always open
    payer_clients: frozenset[PayerClient] | None = None  # None = any client
    expected_success_rate: float = 0.95  # prior for the success-rate estimate before data arrives
    priority: int = 100  # last tie-breaker: lower first
    description: str = ""
    version: int = 1

    def is_open(self, local: LocalTime) -> bool:
        return not self.opening_hours or any(w.contains(local) for w in self.opening_hours)

    def validate(self) -> list[FieldError]:
        errors: list[FieldError] = []
        if not ROUTE_ID_RE.match(self.route_id):
            errors.append(FieldError("route_id", "lowercase letters, digits, '_' or '-', 1–64 characters"))
        if not self.scenes:
            errors.append(FieldError("scenes", "at least one scene"))
        for name in ("provider", "connector", "config_ref"):
            value = getattr(self, name)
            if not value or len(value) > 128:
                errors.append(FieldError(name, "required, at most 128 characters"))
        if not CURRENCY_RE.match(self.currency):
            errors.append(FieldError("currency", "an ISO 4217 code such as CNY"))
        if self.amount_min_minor < 1:
            errors.append(FieldError("amount_min_minor", "must be at least 1"))
        if self.amount_max_minor is not None and self.amount_max_minor < self.amount_min_minor:
            errors.append(FieldError("amount_max_minor", "must be at least amount_min_minor"))
        if self.daily_volume_cap_minor is not None and self.daily_volume_cap_minor < 1:
            errors.append(FieldError("daily_volume_cap_minor", "must be positive (omit it for no cap)"))
        for index, window in enumerate(self.opening_hours):
            errors.extend(window.validate(f"opening_hours[{index}]"))
        if self.payer_clients is not None and not self.payer_clients:
            errors.append(FieldError("payer_clients", "omit it for any client, or list at least one"))
        if not 0.0 < self.expected_success_rate <= 1.0:
            errors.append(FieldError("expected_success_rate", "must be in (0, 1]"))
        return errors


@dataclass(frozen=True, slots=True)
class Contract:
    """A merchant may use a route: its sub-merchant id there, and its industry as registered there.

    The industry lives here because a channel prices by the industry (MCC) the merchant was
    registered under with *that* provider, which can differ between providers.
    """

    merchant_id: str
    route_id: str
    sub_merchant_id: str
    enabled: bool = True
    industry: str | None = None
    version: int = 1

    def validate(self) -> list[FieldError]:
        errors: list[FieldError] = []
        if not self.merchant_id or len(self.merchant_id) > MERCHANT_ID_MAX_LENGTH:
            errors.append(FieldError("merchant_id", f"required, at most {MERCHANT_ID_MAX_LENGTH} characters"))
        if not self.sub_merchant_id or len(self.sub_merchant_id) > 64:
            errors.append(FieldError("sub_merchant_id", "required, at most 64 characters"))
        if self.industry is not None and not INDUSTRY_RE.match(self.industry):
            errors.append(FieldError("industry", "lowercase code such as 'education' or '8211'"))
        return errors


@dataclass(frozen=True, slots=True)
class PaymentContext:
    """Everything decide needs to know about one payment attempt."""

    payment_id: str
    merchant_id: str
    amount_minor: int
    currency: str
    method: Method  # the payer chose it (or their app implies it) before an attempt is made
    scene: Scene
    payer_client: PayerClient = PayerClient.OTHER
    industry: str | None = None  # the merchant's industry, for rules and as the fee fallback
    exclude_route_ids: frozenset[str] = field(default_factory=frozenset)  # already failed for it


def sorted_unique(values: Iterable[str]) -> list[str]:
    return sorted(set(values))
