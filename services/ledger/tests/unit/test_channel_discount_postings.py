"""§3.15: the channel's own coupons in §3.1 / §3.3 — a merchant-funded coupon the channel does not settle
(`unsettled_minor`) takes that much off clearing and the merchant's 2201, and refunds give it back in proportion
(cumulative floors, so any split of refunds gives back exactly the whole); a channel-funded one moves nothing."""

from __future__ import annotations

import itertools
from typing import Any

from services.ledger.events.postings import payment_succeeded_plan, refund_succeeded_plan
from services.ledger.tests.unit.test_cashier_postings import balanced, payment

NOCASH = {
    "discount_minor": 1000,
    "channel_minor": 0,
    "merchant_minor": 1000,
    "unsettled_minor": 1000,
    "coupons": [{"coupon_id": "cpn_wx_1"}],
}


def amounts(plan: Any) -> dict[str, int]:
    return {f"{line.direction}:{line.account.kind}": line.amount_minor for line in plan.lines}


def refund(refund_id: str, amount_minor: int, refunded_after_minor: int) -> dict[str, Any]:
    return {
        "refund_id": refund_id,
        "payment_id": "pay_1",
        "merchant_id": "mch_1",
        "amount_minor": amount_minor,
        "currency": "CNY",
        "channel": "wechatpay",
        "payment_amount_minor": 10000,
        "payment_fee_minor": 25,
        "payment_platform_fee_minor": 60,
        "payment_refunded_minor": refunded_after_minor,
        "payment_channel_discount": NOCASH,
    }


def test_merchant_funded_channel_coupon_is_collected_less_and_recorded() -> None:
    plan = payment_succeeded_plan(payment(channel_discount=NOCASH))
    assert balanced(plan)
    assert amounts(plan) == {
        "debit:channel_clearing": 8975,
        "debit:channel_fee_expense": 25,
        "credit:merchant_pending": 8940,
        "credit:platform_fee_income": 60,
    }
    assert plan.metadata["channel_discount"]["unsettled_minor"] == 1000
    assert plan.metadata["channel_discount"]["coupon_ids"] == ["cpn_wx_1"]
    cash = {**NOCASH, "channel_minor": 1000, "merchant_minor": 0, "unsettled_minor": 0}  # channel-funded (CASH)
    assert amounts(payment_succeeded_plan(payment(channel_discount=cash))) == amounts(payment_succeeded_plan(payment()))


def test_refunds_give_back_exactly_the_unsettled_part_in_any_split() -> None:
    for parts in ([10000], [4000, 6000], [3333, 3333, 3334], [1, 9999]):
        for order in set(itertools.permutations(parts)):
            refunded, back = 0, 0
            for i, part in enumerate(order):
                refunded += part
                plan = refund_succeeded_plan(refund(f"re_{i}", part, refunded))
                assert balanced(plan), (order, plan)
                given = plan.metadata.get("channel_unsettled_reversed_minor", 0)
                lines = amounts(plan)
                # Both the merchant's line and clearing's take the unsettled share off the refund.
                assert (
                    lines.get("debit:merchant_pending", 0) + lines.get("debit:platform_fee_income", 0) == part - given
                )
                assert (
                    lines.get("credit:channel_clearing", 0) + lines.get("credit:channel_fee_expense", 0) == part - given
                )
                back += given
            assert back == 1000, order  # exactly what the payment took off, whatever the split and order
