"""The coupon rules, without I/O: discounts, applicability, funding splits, refund reversals, transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from libs.common.errors import Problem
from services.marketing.domain import rules

FIXED = rules.StockRules(
    discount_kind="fixed",
    currency="CNY",
    amount_off_minor=1000,
    percent_off_bps=None,
    discount_cap_minor=None,
    threshold_minor=10_000,
    funding_party="shared",
    platform_share_bps=3333,
    merchant_ids=("mch_a",),
    scenes=("h5",),
)
PERCENT = rules.StockRules(
    discount_kind="percent",
    currency="CNY",
    amount_off_minor=None,
    percent_off_bps=1500,
    discount_cap_minor=2000,
    threshold_minor=0,
    funding_party="platform",
    platform_share_bps=10_000,
)


def ctx(amount: int, **kw: str) -> rules.PaymentContext:
    return rules.PaymentContext(
        **{"merchant_id": "mch_a", "currency": "CNY", "scene": "h5", **kw}, order_amount_minor=amount
    )


def refused(call: object) -> str:
    with pytest.raises(Problem) as info:
        call()  # type: ignore[operator]
    return info.value.spec.code


def test_fixed_coupon_needs_its_threshold_and_applies_only_where_allowed() -> None:
    assert rules.discount_for(FIXED, ctx(10_000)) == 1000
    assert refused(lambda: rules.discount_for(FIXED, ctx(9_999))) == "threshold_not_met"
    assert refused(lambda: rules.discount_for(FIXED, ctx(10_000, merchant_id="mch_b"))) == "coupon_not_applicable"
    assert refused(lambda: rules.discount_for(FIXED, ctx(10_000, scene="native_qr"))) == "coupon_not_applicable"
    assert refused(lambda: rules.discount_for(FIXED, ctx(10_000, currency="USD"))) == "coupon_not_applicable"


def test_percent_coupon_is_floored_and_capped_and_leaves_one_fen_to_pay() -> None:
    assert rules.discount_for(PERCENT, ctx(999)) == 149
    assert rules.discount_for(PERCENT, ctx(100_000)) == 2000
    no_threshold = rules.StockRules(**{**{n: getattr(FIXED, n) for n in FIXED.__slots__}, "threshold_minor": 0})
    assert rules.discount_for(no_threshold, ctx(500)) == 499
    assert refused(lambda: rules.discount_for(no_threshold, ctx(1))) == "threshold_not_met"


def test_funding_split_and_refund_reversal_sum_exactly() -> None:
    assert rules.funding_split(1000, 3333) == (333, 667)
    platform, discount, payable = 333, 1000, 9000
    parts = [
        rules.refund_reversal(
            discount_minor=discount,
            platform_minor=platform,
            payable_minor=payable,
            refunded_before_minor=before,
            refund_minor=amount,
        )
        for before, amount in ((0, 1), (1, 2999), (3000, 3001), (6001, 2999))
    ]
    assert sum(p for p, _ in parts) == platform and sum(p + m for p, m in parts) == discount


def test_validity_is_the_earlier_of_the_window_and_n_days() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    start, end = rules.validity(claimed_at=now, valid_from=None, valid_until=now + timedelta(days=3), valid_days=7)
    assert (start, end) == (now, now + timedelta(days=3))
    assert refused(lambda: rules.check_valid_at(end, start, end)) == "coupon_expired"


def test_transitions() -> None:
    assert rules.transition_target("start", "draft") == "running"
    assert rules.transition_target("end", "paused") == "ended"
    assert refused(lambda: rules.transition_target("resume", "running")) == "invalid_stock_transition"
    assert refused(lambda: rules.check_merchant_may_define(PERCENT, "mch_a")) == "funding_not_allowed"
