"""Online redemption for the cashier: lock (discount computed by marketing) → confirm | release | expiry;
refunds reverse the funding proportionally and return the coupon per the stock's rule; events carry the
funding split; every refusal has its stable code and changes nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from services.marketing.store.tables import redemptions
from services.marketing.tests.integration.conftest import Marketing, code
from services.marketing.worker import expire_locks_round

LOCKS = "/v1/internal/marketing/locks"


def lock_body(coupon: dict[str, Any], payment_id: str = "pay_1", **overrides: Any) -> dict[str, Any]:
    return {
        "payment_id": payment_id,
        "coupon_id": coupon["coupon_id"],
        "user_id": coupon["user_id"],
        "merchant_id": "mch_a",
        "scene": "h5",
        "payment_method": "wechatpay",
        "order_amount_minor": 12_000,
        **overrides,
    }


async def _coupon(m: Marketing, **stock: Any) -> dict[str, Any]:
    created = await m.running_stock(**stock)
    response = await m.claim(created["stock_id"], request_id=created["stock_id"])
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _status(m: Marketing, coupon_id: str) -> str:
    return str((await m.get(f"/v1/marketing/me/coupons/{coupon_id}", m.user())).json()["status"])


async def _redemption_count(m: Marketing) -> int:
    async with m.runtime.uow.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(redemptions))).scalar_one())


async def test_lock_confirm_refund_and_return_with_the_funding_split(marketing: Marketing) -> None:
    coupon = await _coupon(marketing, funding_party="shared", platform_share_bps=3000)
    locked = await marketing.post(LOCKS, lock_body(coupon), {})
    assert locked.status_code == 201, locked.text
    r = locked.json()
    assert (r["status"], r["discount_minor"], r["payable_minor"]) == ("locked", 1000, 11_000)
    assert r["funding"] == {"party": "shared", "platform_share_bps": 3000, "platform_minor": 300, "merchant_minor": 700}
    assert await _status(marketing, coupon["coupon_id"]) == "locked"
    replay = await marketing.post(LOCKS, lock_body(coupon), {}, replica=1)
    assert replay.status_code == 200 and replay.json()["redemption_id"] == r["redemption_id"]
    base = f"/v1/internal/marketing/redemptions/{r['redemption_id']}"
    used = await marketing.post(f"{base}/confirm", {}, {})
    assert used.json()["status"] == "used" and (await marketing.post(f"{base}/confirm", {}, {})).status_code == 200
    assert await _status(marketing, coupon["coupon_id"]) == "used"
    event = (await marketing.events("coupon.used"))[0]["data"]
    assert event["funding"] == {
        "party": "shared",
        "platform_share_bps": 3000,
        "platform_minor": 300,
        "merchant_minor": 700,
    }
    assert (event["payment_id"], event["discount_minor"], event["payable_minor"]) == ("pay_1", 1000, 11_000)
    assert code(await marketing.post(f"{base}/release", {}, {})) == "coupon_used"
    # Partial refunds reverse the discount in proportion to the amount paid; the coupon stays used.
    first = (await marketing.post(f"{base}/refunds", {"refund_id": "re_1", "refund_amount_minor": 5_500}, {})).json()
    assert (first["reversed_platform_minor"], first["reversed_merchant_minor"], first["coupon_returned"]) == (
        150,
        350,
        False,
    )
    again = await marketing.post(f"{base}/refunds", {"refund_id": "re_1", "refund_amount_minor": 5_500}, {})
    assert again.json()["refund_id"] == "re_1" and again.json()["redemption"]["refunded_minor"] == 5_500
    assert code(await marketing.post(f"{base}/refunds", {"refund_id": "re_1", "refund_amount_minor": 1}, {})) == (
        "idempotency_key_reused"
    )
    too_much = await marketing.post(f"{base}/refunds", {"refund_id": "re_2", "refund_amount_minor": 5_501}, {})
    assert code(too_much) == "refund_exceeds_payment" and too_much.json()["refundable_minor"] == 5_500
    last = (await marketing.post(f"{base}/refunds", {"refund_id": "re_3", "refund_amount_minor": 5_500}, {})).json()
    assert (last["reversed_platform_minor"], last["reversed_merchant_minor"], last["coupon_returned"]) == (
        150,
        350,
        True,
    )
    assert last["redemption"]["status"] == "refunded"
    assert await _status(marketing, coupon["coupon_id"]) == "available"
    kinds = [e["type"] for e in await marketing.events()]
    assert kinds == [
        "coupon.claimed",
        "coupon.locked",
        "coupon.used",
        "coupon.refunded",
        "coupon.refunded",
        "coupon.returned",
    ]
    stats = (await marketing.get(f"/v1/marketing/campaigns/{coupon['campaign_id']}/stats", marketing.operator())).json()
    assert stats["cost"] == {"platform_minor": 0, "merchant_minor": 0, "total_minor": 0}
    assert (stats["claimed_count"], stats["redeemed_count"]) == (1, 1)


async def test_a_stock_that_never_returns_keeps_the_coupon_used(marketing: Marketing) -> None:
    coupon = await _coupon(marketing, refund_policy="never_return")
    r = (await marketing.post(LOCKS, lock_body(coupon), {})).json()
    base = f"/v1/internal/marketing/redemptions/{r['redemption_id']}"
    await marketing.post(f"{base}/confirm", {}, {})
    done = await marketing.post(f"{base}/refunds", {"refund_id": "re_1", "refund_amount_minor": 11_000}, {})
    assert done.json()["coupon_returned"] is False and done.json()["reversed_platform_minor"] == 1000
    assert await _status(marketing, coupon["coupon_id"]) == "used"
    stats = (await marketing.get(f"/v1/marketing/campaigns/{coupon['campaign_id']}/stats", marketing.operator())).json()
    assert stats["cost"]["total_minor"] == 0


async def test_two_payments_racing_for_one_coupon_one_wins(marketing: Marketing) -> None:
    coupon = await _coupon(marketing)
    results = await asyncio.gather(
        *(marketing.post(LOCKS, lock_body(coupon, payment_id=f"pay_{i}"), {}, replica=i % 2) for i in range(8))
    )
    assert sorted(r.status_code for r in results) == [201] + [409] * 7
    assert {code(r) for r in results if r.status_code == 409} == {"coupon_locked"}
    assert await _redemption_count(marketing) == 1


async def test_release_frees_the_coupon_and_a_late_success_still_uses_it(marketing: Marketing) -> None:
    coupon = await _coupon(marketing)
    r = (await marketing.post(LOCKS, lock_body(coupon), {})).json()
    base = f"/v1/internal/marketing/redemptions/{r['redemption_id']}"
    released = await marketing.post(f"{base}/release", {"reason": "payment_closed"}, {})
    assert (released.json()["status"], released.json()["release_reason"]) == ("released", "payment_closed")
    assert (await marketing.post(f"{base}/release", {}, {})).json()["status"] == "released"
    assert await _status(marketing, coupon["coupon_id"]) == "available"
    assert (await marketing.post(f"{base}/confirm", {}, {})).json()["status"] == "used"  # late success: honoured
    assert code(await marketing.post(LOCKS, lock_body(coupon, payment_id="pay_2"), {})) == "coupon_used"
    # A released lock whose coupon went to another payment cannot be confirmed.
    other = await _coupon(marketing)
    first = (await marketing.post(LOCKS, lock_body(other, payment_id="pay_3"), {})).json()
    await marketing.post(f"/v1/internal/marketing/redemptions/{first['redemption_id']}/release", {}, {})
    second = (await marketing.post(LOCKS, lock_body(other, payment_id="pay_4"), {})).json()
    late = await marketing.post(f"/v1/internal/marketing/redemptions/{first['redemption_id']}/confirm", {}, {})
    assert code(late) == "lock_expired"
    assert second["status"] == "locked"


async def test_a_lock_expires_by_itself(marketing: Marketing) -> None:
    coupon = await _coupon(marketing)
    r = (await marketing.post(LOCKS, lock_body(coupon, lock_seconds=60), {})).json()
    assert await expire_locks_round(marketing.runtime) == 0
    marketing.move_clock(timedelta(seconds=61))
    assert await expire_locks_round(marketing.runtime) == 1
    assert await _status(marketing, coupon["coupon_id"]) == "available"
    got = (await marketing.get(f"/v1/internal/marketing/redemptions/{r['redemption_id']}", {})).json()
    assert got["status"] == "expired"
    assert (await marketing.events("coupon.released"))[0]["data"]["reason"] == "lock_expired"
    # An expired lock not swept yet is released by the next lock attempt itself.
    second = (await marketing.post(LOCKS, lock_body(coupon, payment_id="pay_2", lock_seconds=60), {})).json()
    marketing.move_clock(timedelta(seconds=61))
    third = await marketing.post(LOCKS, lock_body(coupon, payment_id="pay_3"), {})
    assert third.status_code == 201
    got = (await marketing.get(f"/v1/internal/marketing/redemptions/{second['redemption_id']}", {})).json()
    assert got["status"] == "expired"


async def test_refusals_have_stable_codes_and_change_nothing(marketing: Marketing) -> None:
    coupon = await _coupon(
        marketing, scenes=["h5"], payment_methods=["wechatpay"], merchant_ids=["mch_a"], valid_days_after_claim=1
    )
    refusals = [
        (lock_body(coupon, merchant_id="mch_b"), "coupon_not_applicable"),
        (lock_body(coupon, scene="native_qr"), "coupon_not_applicable"),
        (lock_body(coupon, payment_method="alipay"), "coupon_not_applicable"),
        (lock_body(coupon, currency="USD"), "coupon_not_applicable"),
        (lock_body(coupon, order_amount_minor=9_999), "threshold_not_met"),
        (lock_body(coupon, user_id="usr_2"), "coupon_not_found"),
        (lock_body(coupon, coupon_id="cpn_nope"), "coupon_not_found"),
        (lock_body(coupon, order_amount_minor=0), "validation_failed"),
        (lock_body(coupon, order_amount_minor="12000"), "validation_failed"),
    ]
    for body, expected in refusals:
        assert code(await marketing.post(LOCKS, body, {})) == expected, body
    missing = "/v1/internal/marketing/redemptions/rdm_nope"
    for suffix, body in (
        ("/confirm", {}),
        ("/release", {}),
        ("/refunds", {"refund_id": "x", "refund_amount_minor": 1}),
    ):
        assert code(await marketing.post(missing + suffix, body, {})) == "redemption_not_found"
    r = (await marketing.post(LOCKS, lock_body(coupon), {})).json()
    refund = await marketing.post(
        f"/v1/internal/marketing/redemptions/{r['redemption_id']}/refunds",
        {"refund_id": "re_1", "refund_amount_minor": 1},
        {},
    )
    assert code(refund) == "redemption_not_used"
    assert (
        code(await marketing.post(LOCKS, lock_body(coupon, order_amount_minor=13_000), {})) == "idempotency_key_reused"
    )
    await marketing.post(f"/v1/internal/marketing/redemptions/{r['redemption_id']}/release", {}, {})
    marketing.move_clock(timedelta(days=2))
    assert code(await marketing.post(LOCKS, lock_body(coupon, payment_id="pay_9"), {})) == "coupon_expired"
    assert await _status(marketing, coupon["coupon_id"]) == "available"
    assert await _redemption_count(marketing) == 1
    assert len(await marketing.events("coupon.locked")) == 1
    forbidden = await marketing.post(LOCKS, lock_body(coupon, payment_id="pay_8"), marketing.merchant())
    assert code(forbidden) == "forbidden"
    assert code(await marketing.post(LOCKS, lock_body(coupon, payment_id="pay_8"), marketing.user())) == "forbidden"


async def test_applicable_coupons_for_a_payment_best_first(marketing: Marketing) -> None:
    small = await _coupon(marketing)  # 10.00 off from 100.00
    big = await _coupon(marketing, amount_off_minor=3000, threshold_minor=20_000)  # 30.00 off from 200.00
    other_shop = await _coupon(marketing, merchant_ids=["mch_b"])
    path = f"/v1/internal/marketing/users/{small['user_id']}/applicable-coupons"
    offers = (await marketing.get(f"{path}?merchant_id=mch_a&order_amount_minor=25000", {})).json()["data"]
    assert [(o["coupon_id"], o["discount_minor"], o["payable_minor"]) for o in offers] == [
        (big["coupon_id"], 3000, 22_000),
        (small["coupon_id"], 1000, 24_000),
    ]
    offers = (await marketing.get(f"{path}?merchant_id=mch_a&order_amount_minor=12000", {})).json()["data"]
    assert [o["coupon_id"] for o in offers] == [small["coupon_id"]]
    await marketing.post(LOCKS, lock_body(small), {})
    offers = (await marketing.get(f"{path}?merchant_id=mch_b&order_amount_minor=25000", {})).json()["data"]
    # The locked one is not offered; the any-merchant coupon applies at mch_b too.
    assert [o["coupon_id"] for o in offers] == [big["coupon_id"], other_shop["coupon_id"]]
    assert code(await marketing.get(f"{path}?merchant_id=mch_a", {})) == "validation_failed"
    assert code(await marketing.get(f"{path}?merchant_id=mch_a&order_amount_minor=1", marketing.user())) == "forbidden"


async def test_a_coupon_named_by_its_code_is_locked_for_its_own_user_only(marketing: Marketing) -> None:
    coupon = await _coupon(marketing, funding_party="platform")
    by_code = {**lock_body(coupon, "pay_code_1"), "coupon_code": coupon["code"]}
    del by_code["coupon_id"]
    locked = await marketing.post(LOCKS, by_code, {})
    assert locked.status_code == 201, locked.text
    assert (locked.json()["coupon_id"], locked.json()["discount_minor"]) == (coupon["coupon_id"], 1000)
    someone_else = {**by_code, "payment_id": "pay_code_2", "user_id": "usr_other"}
    assert code(await marketing.post(LOCKS, someone_else, {})) == "coupon_not_found"
    both = {**lock_body(coupon, "pay_code_3"), "coupon_code": coupon["code"]}
    assert code(await marketing.post(LOCKS, both, {})) == "validation_failed"
    neither = {k: v for k, v in lock_body(coupon, "pay_code_4").items() if k != "coupon_id"}
    assert code(await marketing.post(LOCKS, neither, {})) == "validation_failed"


async def test_payment_outcomes_give_one_state_in_any_order(marketing: Marketing) -> None:
    """The cashier's events on two topics: a full refund consumed before its payment's success still uses the
    coupon, reverses its funding and returns it; the success arriving afterwards changes nothing."""
    from libs.common.events import Envelope
    from services.marketing.events.payment_outcomes import on_payment_event, on_refund_event

    coupon = await _coupon(marketing, funding_party="platform")
    r = (await marketing.post(LOCKS, lock_body(coupon, payment_id="pay_order"), {})).json()
    discount = {"redemption_id": r["redemption_id"]}
    refund = Envelope(
        type="refund.succeeded",
        source="cashier",
        subject="re_order",
        data={"refund_id": "re_order", "amount_minor": r["payable_minor"], "payment_discount": discount},
    )
    paid = Envelope(
        type="payment.succeeded",
        source="cashier",
        subject="pay_order",
        data={"payment_id": "pay_order", "discount": discount},
    )
    for event, handler in ((refund, on_refund_event), (paid, on_payment_event)):  # each once, as the inbox does
        async with marketing.runtime.uow.begin() as tx:
            await handler(tx, event)
    base = f"/v1/internal/marketing/redemptions/{r['redemption_id']}"
    state = (await marketing.get(base, {})).json()
    assert (state["status"], state["refunded_minor"]) == ("refunded", r["payable_minor"])
    assert await _status(marketing, coupon["coupon_id"]) == "available"  # returned on the full refund
    assert [e["data"]["refund_id"] for e in await marketing.events("coupon.refunded")] == ["re_order"]
    assert len(await marketing.events("coupon.used")) == 1
