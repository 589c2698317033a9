"""§3.14: a coupon redeemed in store moves only the platform's subsidy, once per redemption and direction."""

from __future__ import annotations

from typing import Any

from services.ledger.events.postings import SOURCE_MARKETING, in_store_coupon_plan


def _data(kind: str = "in_store", **extra: Any) -> dict[str, Any]:
    return {
        "redemption_id": "rdm_1",
        "coupon_id": "cpn_1",
        "campaign_id": "cmp_1",
        "kind": kind,
        "merchant_id": "mch_a",
        "store_id": "st_1",
        "currency": "CNY",
        **extra,
    }


def test_used_in_store_credits_the_platforms_part_to_the_merchant() -> None:
    plan = in_store_coupon_plan("coupon.used", _data(funding={"platform_minor": 300, "merchant_minor": 700}))
    assert plan is not None and (plan.idempotency_key, plan.source) == ("rdm_1:in_store_used", SOURCE_MARKETING)
    assert [(line.account.code, line.account.holder_id, line.direction, line.amount_minor) for line in plan.lines] == [
        ("5201", "platform", "debit", 300),
        ("2201", "mch_a", "credit", 300),
    ]


def test_undone_takes_it_back() -> None:
    plan = in_store_coupon_plan("coupon.redemption_undone", _data(reversed={"platform_minor": 300}))
    assert plan is not None and plan.idempotency_key == "rdm_1:in_store_undone"
    assert [(line.account.code, line.direction) for line in plan.lines] == [("5201", "credit"), ("2201", "debit")]


def test_nothing_for_online_redemptions_merchant_funded_coupons_or_other_events() -> None:
    assert in_store_coupon_plan("coupon.used", _data(kind="online", funding={"platform_minor": 300})) is None
    assert in_store_coupon_plan("coupon.used", _data(funding={"platform_minor": 0, "merchant_minor": 1000})) is None
    assert in_store_coupon_plan("coupon.claimed", _data()) is None
