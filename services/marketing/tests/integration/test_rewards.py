"""Coupons issued as a reward on a user's first payment (flows/rewards.py): exactly once per user and rule,
whatever the order of the user's payment events, their redeliveries and the replica handling them; the stock's
budget holds (an exhausted stock issues nothing and the payment's other effects stand); operators only; a bad
rule changes nothing. Events go through the handler the inbox consumer runs, one transaction each."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from libs.common.events import Envelope
from services.marketing.flows import rewards
from services.marketing.store.tables import coupons
from services.marketing.tests.integration.conftest import Marketing, code, start_marketing

RULES = "/v1/marketing/reward-rules"


def paid(payment_id: str, user_id: str | None, merchant_id: str = "mch_a", **extra: Any) -> Envelope:
    return Envelope(
        type="payment.succeeded",
        source="cashier",
        subject=payment_id,
        data={
            "payment_id": payment_id,
            "merchant_id": merchant_id,
            "status": "succeeded",
            "amount_minor": 5_000,
            "currency": "CNY",
            "purpose": "payment",
            "payer_user_id": user_id,
            "livemode": True,
            "succeeded_at": datetime.now(UTC).isoformat(),
            **extra,
        },
    )


async def deliver(m: Marketing, event: Envelope, replica: int = 0) -> None:
    """As the inbox consumer runs the rewards subscription: one transaction per event."""
    runtime = m.runtimes[replica]
    async with runtime.uow.begin() as tx:
        await rewards.on_payment_event(tx, event, now=datetime.now(UTC), day_timezone="Asia/Shanghai")


async def reward_coupons(m: Marketing) -> list[tuple[str, str]]:
    """(user, stock) of every coupon issued as a reward."""
    async with m.runtime.uow.read() as conn:
        rows = (await conn.execute(select(coupons).where(coupons.c.source == "reward"))).mappings().all()
    return sorted((r["user_id"], r["stock_id"]) for r in rows)


async def test_first_payment_rewards_once_per_user_in_any_order_within_the_budget(
    migrated_database: Callable[..., Any], service_settings: Callable[..., Any], running_apps: Callable[..., Any]
) -> None:
    m = await start_marketing(migrated_database, service_settings, running_apps)
    platform_stock = (await m.running_stock(budget_count=2))["stock_id"]
    merchant_stock = (await m.running_stock())["stock_id"]
    # Operators only; an unknown stock, a bad event: refused, nothing created.
    body = {"event": "first_payment", "stock_id": platform_stock}
    assert (await m.post(RULES, body, m.merchant())).status_code == 403
    assert code(await m.post(RULES, {**body, "stock_id": "cps_nope"}, m.operator())) == "stock_not_found"
    assert code(await m.post(RULES, {**body, "event": "top_up"}, m.operator())) == "validation_failed"
    assert (await m.get(RULES, m.operator())).json()["data"] == []
    platform = await m.post(RULES, body, m.operator())
    at_merchant = await m.post(RULES, {**body, "stock_id": merchant_stock, "merchant_id": "mch_b"}, m.operator())
    assert platform.status_code == 201 and at_merchant.status_code == 201, (platform.text, at_merchant.text)
    assert platform.json()["merchant_id"] is None and at_merchant.json()["merchant_id"] == "mch_b"

    # usr_1's payments arrive at once on both replicas, each twice: one platform coupon, whichever was first.
    first = [paid(f"pay_r1_{i}", "usr_1") for i in range(3)]
    await asyncio.gather(*(deliver(m, e, replica=i % 2) for i, e in enumerate(first + first)))
    assert await reward_coupons(m) == [("usr_1", platform_stock)]
    # usr_2 pays at mch_b first: the platform's and mch_b's first payment both. A later payment earns nothing.
    await deliver(m, paid("pay_r2_1", "usr_2", merchant_id="mch_b"))
    await deliver(m, paid("pay_r2_2", "usr_2", merchant_id="mch_b"))
    assert await reward_coupons(m) == sorted(
        [("usr_1", platform_stock), ("usr_2", platform_stock), ("usr_2", merchant_stock)]
    )
    # The platform stock's budget (2) is spent: usr_3's first payment is refused a coupon, the event still applies
    # (its first payment is recorded: a budget raised later does not reward a second payment).
    await deliver(m, paid("pay_r3_1", "usr_3"))
    assert ("usr_3", platform_stock) not in await reward_coupons(m)
    # Not a purchase, a test payment, an unknown payer: nothing.
    for event in (
        paid("pay_t_1", "usr_4", purpose="wallet_topup"),
        paid("pay_t_2", "usr_5", livemode=False),
        paid("pay_t_3", None),
    ):
        await deliver(m, event)
    assert {u for u, _ in await reward_coupons(m)} == {"usr_1", "usr_2"}
    listed = {r["rule_id"]: r["issued_count"] for r in (await m.get(RULES, m.operator())).json()["data"]}
    assert listed == {platform.json()["rule_id"]: 2, at_merchant.json()["rule_id"]: 1}

    ended = await m.post(f"{RULES}/{at_merchant.json()['rule_id']}/end", {}, m.operator())
    assert ended.status_code == 200 and ended.json()["status"] == "ended"
    await deliver(m, paid("pay_r6_1", "usr_6", merchant_id="mch_b"))
    assert ("usr_6", merchant_stock) not in await reward_coupons(m)
    assert code(await m.post(f"{RULES}/rwd_nope/end", {}, m.operator())) == "reward_rule_not_found"
