"""In-store redemption (核销) by a merchant's staff: by code or QR payload, scoped to the merchant and its
stores, at most once even when two tills race, undo within the window, the cost in the campaign's stats."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from services.marketing.context import marketing_context
from services.marketing.tests.integration.conftest import Marketing, code

REDEEM = "/v1/marketing/in-store/redemptions"
VERIFY = "/v1/marketing/in-store/verifications"


async def _coupon(m: Marketing, **stock: Any) -> dict[str, Any]:
    created = await m.running_stock(
        m.merchant("mch_a"), funding_party="merchant", store_ids=["sto_1", "sto_2"], threshold_minor=0, **stock
    )
    response = await m.claim(created["stock_id"], request_id=created["stock_id"])
    assert response.status_code == 201, response.text
    return dict(response.json())


def body(coupon: dict[str, Any], request_id: str = "till-1", **overrides: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "code": coupon["code"],
        "store_id": "sto_1",
        "order_amount_minor": 5_000,
        **overrides,
    }


async def test_staff_verify_then_redeem_once_and_undo_within_the_window(marketing: Marketing) -> None:
    coupon = await _coupon(marketing)
    staff = marketing.merchant("mch_a")
    seen = await marketing.post(VERIFY, body(coupon), staff)
    assert seen.status_code == 200, seen.text
    assert (seen.json()["discount_minor"], seen.json()["payable_minor"]) == (1000, 4000)
    redeemed = await marketing.post(REDEEM, body(coupon), staff)
    assert redeemed.status_code == 201, redeemed.text
    r = redeemed.json()
    assert (r["kind"], r["status"], r["merchant_id"], r["store_id"]) == ("in_store", "used", "mch_a", "sto_1")
    assert r["funding"] == {"party": "merchant", "platform_share_bps": 0, "platform_minor": 0, "merchant_minor": 1000}
    replay = await marketing.post(REDEEM, body(coupon), staff)
    assert replay.status_code == 200 and replay.json()["redemption_id"] == r["redemption_id"]
    assert code(await marketing.post(REDEEM, body(coupon, request_id="till-2"), staff)) == "coupon_used"
    by_qr = {**body(coupon, request_id="till-3"), "code": None, "qr_payload": coupon["qr_payload"]}
    assert code(await marketing.post(REDEEM, by_qr, staff)) == "coupon_used"
    stats = (await marketing.get(f"/v1/marketing/campaigns/{coupon['campaign_id']}/stats", staff)).json()
    assert (stats["redeemed_count"], stats["cost"]["merchant_minor"], stats["paid_volume_minor"]) == (1, 1000, 4000)
    undone = await marketing.post(f"{REDEEM}/{r['redemption_id']}/undo", {}, staff)
    assert undone.json()["status"] == "undone"
    assert (await marketing.post(f"{REDEEM}/{r['redemption_id']}/undo", {}, staff)).json()["status"] == "undone"
    again = await marketing.post(REDEEM, by_qr, staff)
    assert again.status_code == 201
    marketing.move_clock(timedelta(seconds=marketing_context(marketing.runtime).settings.in_store_undo_seconds + 1))
    late = await marketing.post(f"{REDEEM}/{again.json()['redemption_id']}/undo", {}, staff)
    assert code(late) == "undo_window_passed"
    kinds = [e["type"] for e in await marketing.events() if e["type"] != "coupon.claimed"]
    assert kinds == ["coupon.used", "coupon.redemption_undone", "coupon.used"]
    stats = (await marketing.get(f"/v1/marketing/campaigns/{coupon['campaign_id']}/stats", staff)).json()
    assert (stats["redeemed_count"], stats["cost"]["merchant_minor"]) == (1, 1000)


async def test_two_tills_redeeming_one_code_at_once_one_wins(marketing: Marketing) -> None:
    coupon = await _coupon(marketing)
    staff = marketing.merchant("mch_a")
    results = await asyncio.gather(
        *(marketing.post(REDEEM, body(coupon, request_id=f"till-{i}"), staff, replica=i % 2) for i in range(10))
    )
    assert sorted(r.status_code for r in results) == [201] + [409] * 9
    assert {code(r) for r in results if r.status_code == 409} == {"coupon_used"}
    assert len(await marketing.events("coupon.used")) == 1


async def test_another_merchant_or_store_is_refused_and_nothing_changes(marketing: Marketing) -> None:
    coupon = await _coupon(marketing)
    staff = marketing.merchant("mch_a")
    assert code(await marketing.post(REDEEM, body(coupon), marketing.merchant("mch_b"))) == "coupon_not_applicable"
    assert code(await marketing.post(REDEEM, body(coupon, store_id="sto_9"), staff)) == "coupon_not_applicable"
    assert code(await marketing.post(REDEEM, body(coupon, code="0" * 16), staff)) == "coupon_not_found"
    assert code(await marketing.post(REDEEM, body(coupon, code=None), staff)) == "validation_failed"
    bad_qr = {**body(coupon), "code": None, "qr_payload": "HELLO:" + coupon["code"]}
    assert code(await marketing.post(REDEEM, bad_qr, staff)) == "validation_failed"
    assert code(await marketing.post(REDEEM, body(coupon), marketing.user())) == "forbidden"
    assert code(await marketing.post(REDEEM, body(coupon), marketing.operator())) == "forbidden"
    marketing.move_clock(timedelta(days=31))
    assert code(await marketing.post(REDEEM, body(coupon), staff)) == "coupon_expired"
    assert await marketing.events("coupon.used") == []
    r = (await marketing.get(f"/v1/marketing/me/coupons/{coupon['coupon_id']}", marketing.user())).json()
    assert r["status"] == "available"
    other = await marketing.post(f"{REDEEM}/rdm_nope/undo", {}, staff)
    assert code(other) == "redemption_not_found"


async def test_another_merchant_cannot_undo(marketing: Marketing) -> None:
    coupon = await _coupon(marketing)
    r = (await marketing.post(REDEEM, body(coupon), marketing.merchant("mch_a"))).json()
    refused = await marketing.post(f"{REDEEM}/{r['redemption_id']}/undo", {}, marketing.merchant("mch_b"))
    assert code(refused) == "redemption_not_found"
