"""Coupon rules: what a stock promises, what a coupon is worth on an order, who pays for it, and how a
refund reverses it. Pure functions on integers (minor units, basis points); no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from libs.common.errors import Problem
from services.marketing.domain.errors import (
    COUPON_EXPIRED,
    COUPON_NOT_APPLICABLE,
    FUNDING_NOT_ALLOWED,
    INVALID_STOCK,
    INVALID_STOCK_TRANSITION,
    THRESHOLD_NOT_MET,
)

BPS = 10_000
DiscountKind = Literal["fixed", "percent"]
FundingParty = Literal["platform", "merchant", "shared"]
RefundPolicy = Literal["return_on_full_refund", "never_return"]
StockStatus = Literal["draft", "running", "paused", "ended"]
Transition = Literal["start", "pause", "resume", "end"]

# Named transitions of a stock: transition -> (statuses it may leave, status it reaches).
TRANSITIONS: dict[Transition, tuple[frozenset[str], StockStatus]] = {
    "start": (frozenset({"draft"}), "running"),
    "pause": (frozenset({"running"}), "paused"),
    "resume": (frozenset({"paused"}), "running"),
    "end": (frozenset({"draft", "running", "paused"}), "ended"),
}


def transition_target(transition: Transition, current: str) -> StockStatus:
    """The status `transition` leads to from `current`, or 409 `invalid_stock_transition`."""
    sources, target = TRANSITIONS[transition]
    if current not in sources:
        raise Problem(INVALID_STOCK_TRANSITION, f"cannot {transition} a {current} stock", status=current)
    return target


@dataclass(frozen=True, slots=True)
class StockRules:
    """The immutable promise of a stock, copied into every decision about its coupons."""

    discount_kind: DiscountKind
    currency: str
    amount_off_minor: int | None
    percent_off_bps: int | None
    discount_cap_minor: int | None
    threshold_minor: int
    funding_party: FundingParty
    platform_share_bps: int
    merchant_ids: tuple[str, ...] = ()
    store_ids: tuple[str, ...] = ()
    scenes: tuple[str, ...] = ()
    payment_methods: tuple[str, ...] = ()

    @property
    def face_value_minor(self) -> int:
        """The most one coupon can ever be worth: what a claim reserves from the budget."""
        value = self.amount_off_minor if self.discount_kind == "fixed" else self.discount_cap_minor
        assert value is not None
        return value


def validate_definition(rules: StockRules, *, budget_count: int, budget_minor: int | None) -> int:
    """Refuse a stock that could never be honoured or paid for (422 `invalid_stock`, naming the field).
    Returns the budget in minor units: as given, or enough for `budget_count` coupons at face value."""

    def bad(field: str, detail: str) -> Problem:
        return Problem(INVALID_STOCK, detail, field=field)

    if rules.discount_kind == "fixed":
        if not rules.amount_off_minor or rules.percent_off_bps is not None or rules.discount_cap_minor is not None:
            raise bad("amount_off_minor", "a fixed coupon needs amount_off_minor and no percent_off_bps/discount_cap")
    else:
        if rules.percent_off_bps is None or not 1 <= rules.percent_off_bps < BPS:
            raise bad("percent_off_bps", "a percent coupon needs percent_off_bps in 1..9999")
        if not rules.discount_cap_minor or rules.amount_off_minor is not None:
            raise bad("discount_cap_minor", "a percent coupon needs discount_cap_minor (and no amount_off_minor)")
    if rules.funding_party == "platform" and rules.platform_share_bps != BPS:
        raise bad("platform_share_bps", "a platform-funded stock has platform_share_bps 10000")
    if rules.funding_party == "merchant" and rules.platform_share_bps != 0:
        raise bad("platform_share_bps", "a merchant-funded stock has platform_share_bps 0")
    if rules.funding_party == "shared" and not 1 <= rules.platform_share_bps < BPS:
        raise bad("platform_share_bps", "a shared stock needs platform_share_bps in 1..9999")
    if budget_count < 1:
        raise bad("budget_count", "budget_count must be at least 1")
    if budget_minor is None:
        return budget_count * rules.face_value_minor
    if budget_minor < rules.face_value_minor:
        raise bad("budget_minor", "budget_minor cannot pay for even one coupon")
    return budget_minor


def check_merchant_may_define(rules: StockRules, merchant_id: str) -> None:
    """A merchant's own stock spends only its own money and applies only to itself."""
    if rules.funding_party != "merchant":
        raise Problem(FUNDING_NOT_ALLOWED, "a merchant's stock is funded by the merchant")
    if rules.merchant_ids != (merchant_id,):
        raise Problem(FUNDING_NOT_ALLOWED, "a merchant's stock applies to that merchant only")


def validity(
    *, claimed_at: datetime, valid_from: datetime | None, valid_until: datetime | None, valid_days: int | None
) -> tuple[datetime, datetime]:
    """A claimed coupon's window: the stock's window, or N days from the claim (ending no later than the
    stock's `valid_until` when both are set)."""
    start = max(claimed_at, valid_from) if valid_from else claimed_at
    ends = [t for t in (valid_until, claimed_at + timedelta(days=valid_days) if valid_days else None) if t]
    assert ends, "a stock has valid_until or valid_days_after_claim"
    return start, min(ends)


@dataclass(frozen=True, slots=True)
class PaymentContext:
    """Where a coupon is being spent."""

    merchant_id: str
    order_amount_minor: int
    currency: str
    store_id: str | None = None
    scene: str | None = None
    payment_method: str | None = None


def check_valid_at(now: datetime, valid_from: datetime, valid_until: datetime) -> None:
    if not valid_from <= now < valid_until:
        raise Problem(
            COUPON_EXPIRED,
            "the coupon is not valid now",
            valid_from=valid_from.isoformat(),
            valid_until=valid_until.isoformat(),
        )


def _applies(allowed: tuple[str, ...], value: str | None) -> bool:
    return not allowed or value in allowed


def discount_for(rules: StockRules, ctx: PaymentContext) -> int:
    """The discount (minor units) this coupon gives on this payment, or the refusal that says why not.

    The payer always pays at least one minor unit: channels refuse zero-amount payments."""
    checks = (
        ("currency", rules.currency == ctx.currency),
        ("merchant_id", _applies(rules.merchant_ids, ctx.merchant_id)),
        ("store_id", _applies(rules.store_ids, ctx.store_id)),
        ("scene", _applies(rules.scenes, ctx.scene)),
        ("payment_method", _applies(rules.payment_methods, ctx.payment_method)),
    )
    for field, ok in checks:
        if not ok:
            raise Problem(COUPON_NOT_APPLICABLE, f"the coupon does not apply to this {field}", field=field)
    if ctx.order_amount_minor < max(rules.threshold_minor, 2):
        raise Problem(
            THRESHOLD_NOT_MET,
            f"the order must be at least {max(rules.threshold_minor, 2)}",
            threshold_minor=rules.threshold_minor,
        )
    if rules.discount_kind == "fixed":
        raw = rules.face_value_minor
    else:
        assert rules.percent_off_bps is not None
        raw = min(ctx.order_amount_minor * rules.percent_off_bps // BPS, rules.face_value_minor)
    discount = min(raw, ctx.order_amount_minor - 1)
    if discount < 1:
        raise Problem(THRESHOLD_NOT_MET, "the order is too small for this coupon to give any discount")
    return discount


def funding_split(discount_minor: int, platform_share_bps: int) -> tuple[int, int]:
    """(platform_minor, merchant_minor), summing exactly to the discount; the merchant takes the rounding."""
    platform = discount_minor * platform_share_bps // BPS
    return platform, discount_minor - platform


def refund_reversal(
    *, discount_minor: int, platform_minor: int, payable_minor: int, refunded_before_minor: int, refund_minor: int
) -> tuple[int, int]:
    """(platform, merchant) parts of the discount a refund reverses, proportional to the amount paid.

    Computed cumulatively (what the refunds so far reverse in total, minus what earlier refunds reversed),
    so however a payment is refunded in parts, a full refund reverses exactly the whole discount."""
    before, after = refunded_before_minor, refunded_before_minor + refund_minor
    total = discount_minor * after // payable_minor - discount_minor * before // payable_minor
    platform = platform_minor * after // payable_minor - platform_minor * before // payable_minor
    return platform, total - platform
