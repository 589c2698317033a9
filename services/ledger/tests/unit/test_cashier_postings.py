"""The §3.1 / §3.3 postings of the cashier's events: balanced, the doc's figures, rounding of partial refunds."""

from __future__ import annotations

from typing import Any

from services.ledger.events.postings import (
    is_wallet,
    payment_succeeded_plan,
    refund_fee_share,
    refund_succeeded_plan,
)


def payment(**extra: Any) -> dict[str, Any]:
    return {
        "payment_id": "pay_1",
        "merchant_id": "mch_1",
        "amount_minor": 10000,
        "currency": "CNY",
        "channel": "wechatpay",
        "scene": "native_qr",
        "fee_minor": 25,
        "platform_fee_minor": 60,
        **extra,
    }


def lines(plan: Any) -> list[tuple[str, str, str, int]]:
    return [(line.direction, line.account.kind, line.account.holder_id, line.amount_minor) for line in plan.lines]


def balanced(plan: Any) -> bool:
    debit = sum(line.amount_minor for line in plan.lines if line.direction == "debit")
    credit = sum(line.amount_minor for line in plan.lines if line.direction == "credit")
    return debit == credit


def test_payment_succeeded_matches_the_doc_example() -> None:
    plan = payment_succeeded_plan(payment())
    assert plan.idempotency_key == "pay_1:succeeded" and plan.reference == "pay_1"
    assert lines(plan) == [
        ("debit", "channel_clearing", "platform", 9975),
        ("debit", "channel_fee_expense", "platform", 25),
        ("credit", "merchant_pending", "mch_1", 9940),
        ("credit", "platform_fee_income", "platform", 60),
    ]
    assert plan.lines[0].account.channel == "wechatpay" and balanced(plan)


def test_no_fee_in_force_means_no_fee_lines() -> None:
    plan = payment_succeeded_plan(payment(fee_minor=None, platform_fee_minor=None))
    assert lines(plan) == [
        ("debit", "channel_clearing", "platform", 10000),
        ("credit", "merchant_pending", "mch_1", 10000),
    ]


def test_full_refund_mirrors_the_payment() -> None:
    plan = refund_succeeded_plan(
        {
            "refund_id": "re_1",
            "payment_id": "pay_1",
            "merchant_id": "mch_1",
            "amount_minor": 10000,
            "currency": "CNY",
            "channel": "wechatpay",
            "payment_amount_minor": 10000,
            "payment_fee_minor": 25,
            "payment_platform_fee_minor": 60,
        }
    )
    assert plan.idempotency_key == "re_1:succeeded"
    assert lines(plan) == [
        ("debit", "merchant_pending", "mch_1", 9940),
        ("debit", "platform_fee_income", "platform", 60),
        ("credit", "channel_clearing", "platform", 9975),
        ("credit", "channel_fee_expense", "platform", 25),
    ]


def test_partial_refund_rounds_fee_lines_down_and_stays_balanced() -> None:
    plan = refund_succeeded_plan(
        {
            "refund_id": "re_2",
            "payment_id": "pay_1",
            "merchant_id": "mch_1",
            "amount_minor": 3333,
            "currency": "CNY",
            "channel": "alipay",
            "payment_amount_minor": 10000,
            "payment_fee_minor": 25,
            "payment_platform_fee_minor": 60,
        }
    )
    # 25 × 3333 / 10000 = 8.33 → 8; 60 × 3333 / 10000 = 19.998 → 19
    assert lines(plan) == [
        ("debit", "merchant_pending", "mch_1", 3314),
        ("debit", "platform_fee_income", "platform", 19),
        ("credit", "channel_clearing", "platform", 3325),
        ("credit", "channel_fee_expense", "platform", 8),
    ]
    assert balanced(plan)
    assert refund_fee_share(25, 1, 10000) == 0 and refund_fee_share(25, 10000, 10000) == 25


def test_wallet_events_are_recognised() -> None:
    assert is_wallet({"channel": "wallet"}) and is_wallet({"scene": "wallet", "channel": None})
    assert not is_wallet(payment())


DISCOUNT = {
    "coupon_id": "cpn_1",
    "redemption_id": "rdm_1",
    "stock_id": "cps_1",
    "campaign_id": "cmp_1",
    "party": "shared",
    "platform_share_bps": 3000,
    "platform_minor": 300,
    "merchant_minor": 700,
    "channel_minor": 0,
}


def test_a_discounted_payment_posts_the_platform_subsidy_and_records_the_merchant_part() -> None:
    """§3.13's example: order 12000, 1000 off (platform 300, merchant 700), the channel collected 11000."""
    plan = payment_succeeded_plan(
        payment(
            amount_minor=11000,
            order_amount_minor=12000,
            discount_minor=1000,
            fee_minor=28,
            platform_fee_minor=66,
            discount=DISCOUNT,
        )
    )
    assert lines(plan) == [
        ("debit", "channel_clearing", "platform", 10972),
        ("debit", "channel_fee_expense", "platform", 28),
        ("debit", "marketing_expense", "platform", 300),
        ("credit", "merchant_pending", "mch_1", 11234),  # 12000 − 700 (the merchant's own part) − 66
        ("credit", "platform_fee_income", "platform", 66),
    ]
    assert balanced(plan) and plan.lines[2].account.code == "5201"
    assert plan.metadata["discount"] == {
        "order_amount_minor": 12000,
        "discount_minor": 1000,
        "platform_minor": 300,
        "merchant_minor": 700,
        "channel_minor": 0,
        "coupon_id": "cpn_1",
        "redemption_id": "rdm_1",
        "campaign_id": "cmp_1",
    }


def test_a_merchant_funded_discount_moves_no_platform_money() -> None:
    merchant_only = {**DISCOUNT, "party": "merchant", "platform_minor": 0, "merchant_minor": 1000}
    plan = payment_succeeded_plan(
        payment(amount_minor=11000, fee_minor=0, platform_fee_minor=0, discount=merchant_only)
    )
    assert lines(plan) == [
        ("debit", "channel_clearing", "platform", 11000),
        ("credit", "merchant_pending", "mch_1", 11000),
    ]


def test_refunds_give_the_subsidy_back_in_proportion_and_whole_at_full_refund() -> None:
    base = {
        "payment_id": "pay_1",
        "merchant_id": "mch_1",
        "currency": "CNY",
        "channel": "wechatpay",
        "payment_amount_minor": 11001,
        "payment_fee_minor": 0,
        "payment_platform_fee_minor": 0,
        "payment_discount": DISCOUNT,
    }
    given_back, refunded = 0, 0
    for i, amount in enumerate((3333, 3333, 4335)):  # odd parts: each floor alone would lose a fen
        refunded += amount
        plan = refund_succeeded_plan(
            {**base, "refund_id": f"re_{i}", "amount_minor": amount, "payment_refunded_minor": refunded}
        )
        assert balanced(plan)
        back = {(line.account.kind, line.direction): line.amount_minor for line in plan.lines}
        given_back += back.get(("marketing_expense", "credit"), 0)
        assert back[("merchant_pending", "debit")] == amount + back.get(("marketing_expense", "credit"), 0)
    assert given_back == 300
