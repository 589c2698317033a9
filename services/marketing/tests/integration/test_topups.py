"""Top-up promotions (充值送): a bonus on a paid wallet top-up of the collecting merchant, exactly once whatever
the order of the cashier's events and however often they come, revoked by a refund of the top-up, and a budget
and a per-holder limit that hold under concurrent top-ups through two replicas. Events are applied through the
very handlers the inbox consumer calls, one transaction each, on the real database."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from libs.common.events import Envelope
from services.marketing.store.tables import topup_bonus_grants
from services.marketing.tests.integration.conftest import Marketing, code, start_marketing
from services.marketing.worker import expire_topup_bonuses_round

PROMOTIONS = "/v1/marketing/topup-promotions"
COLLECTOR = "mch_platform_topup"


@pytest.fixture
async def marketing(
    migrated_database: Callable[..., Any], service_settings: Callable[..., Any], running_apps: Callable[..., Any]
) -> Marketing:
    """Two replicas on one fresh database, knowing the platform's collecting merchant for top-ups."""
    return await start_marketing(migrated_database, service_settings, running_apps, wallet_topup_merchant_id=COLLECTOR)


def top_up(payment_id: str, amount_minor: int, holder_id: str = "usr_1", merchant_id: str = COLLECTOR) -> Envelope:
    return Envelope(
        type="payment.succeeded",
        source="cashier",
        subject=payment_id,
        data={
            "payment_id": payment_id,
            "merchant_id": merchant_id,
            "status": "succeeded",
            "amount_minor": amount_minor,
            "currency": "CNY",
            "purpose": "wallet_topup",
            "wallet_holder_id": holder_id,
            "payer_user_id": None,
            "succeeded_at": datetime.now(UTC).isoformat(),
        },
    )


def refund(refund_id: str, payment_id: str, amount_minor: int) -> Envelope:
    return Envelope(
        type="refund.succeeded",
        source="cashier",
        subject=refund_id,
        data={
            "refund_id": refund_id,
            "payment_id": payment_id,
            "merchant_id": COLLECTOR,
            "status": "succeeded",
            "amount_minor": amount_minor,
            "currency": "CNY",
        },
    )


async def promotion(m: Marketing, **overrides: Any) -> dict[str, Any]:
    body = {
        "name": "top up 100, get 10",
        "tiers": [{"min_topup_minor": 10_000, "bonus_minor": 1_000}, {"min_topup_minor": 50_000, "bonus_minor": 8_000}],
        "budget_minor": 1_000_000,
        **overrides,
    }
    created = await m.post(PROMOTIONS, body, m.operator())
    assert created.status_code == 201, created.text
    return dict(created.json())


async def grants(m: Marketing) -> dict[str, tuple[str, int]]:
    async with m.runtime.uow.read() as conn:
        rows = (await conn.execute(select(topup_bonus_grants))).mappings().all()
    return {r["payment_id"]: (r["status"], r["bonus_minor"]) for r in rows}


async def bonus_events(m: Marketing) -> list[tuple[str, str, int]]:
    return [
        (e["type"], e["subject"], e["data"]["bonus_minor"]) for e in await m.events() if e["type"].startswith("topup.")
    ]


async def test_promotions_are_the_platforms_and_bad_rules_change_nothing(marketing: Marketing) -> None:
    created = await promotion(marketing, per_holder_limit=2, bonus_valid_days=90)
    assert (created["status"], created["remaining_budget_minor"], created["granted_count"]) == ("running", 1_000_000, 0)
    merchant = await marketing.post(
        PROMOTIONS,
        {"name": "x", "tiers": [{"min_topup_minor": 100, "bonus_minor": 1}], "budget_minor": 100},
        marketing.merchant(),
    )
    assert merchant.status_code == 403
    bad: list[dict[str, Any]] = [
        {
            "tiers": [
                {"min_topup_minor": 10_000, "bonus_minor": 1_000},
                {"min_topup_minor": 5_000, "bonus_minor": 2_000},
            ]
        },
        {"tiers": [{"min_topup_minor": 100, "bonus_minor": 200}]},
        {"budget_minor": 10},
        {"valid_from": "2026-12-01T00:00:00Z", "valid_until": "2026-11-01T00:00:00Z"},
    ]
    for overrides in bad:
        body = {
            "name": "bad",
            "tiers": [{"min_topup_minor": 10_000, "bonus_minor": 1_000}],
            "budget_minor": 100_000,
            **overrides,
        }
        refused = await marketing.post(PROMOTIONS, body, marketing.operator())
        assert (refused.status_code, code(refused)) == (422, "invalid_topup_promotion"), overrides
    listed = (await marketing.get(PROMOTIONS, marketing.operator())).json()["data"]
    assert [p["promotion_id"] for p in listed] == [created["promotion_id"]]
    ended = await marketing.post(f"{PROMOTIONS}/{created['promotion_id']}/end", {}, marketing.operator())
    assert ended.json()["status"] == "ended"
    await marketing.deliver(top_up("pay_after_end", 10_000))
    assert await grants(marketing) == {"pay_after_end": ("not_granted", 0)}
    missing = await marketing.post(f"{PROMOTIONS}/tpp_nope/end", {}, marketing.operator())
    assert (missing.status_code, code(missing)) == (404, "topup_promotion_not_found")


async def test_bonus_once_by_tier_and_revoked_by_a_refund_in_every_order_and_twice(marketing: Marketing) -> None:
    created = await promotion(marketing, per_holder_limit=100)
    await marketing.deliver(top_up("pay_small", 9_999))  # below the first tier: nothing
    await marketing.deliver(top_up("pay_big", 60_000))  # the highest tier reached: 8000
    await marketing.deliver(top_up("pay_big", 60_000))  # twice is once
    await marketing.deliver(top_up("pay_other", 60_000, merchant_id="mch_a"))  # not the collector's
    assert await grants(marketing) == {"pay_small": ("not_granted", 0), "pay_big": ("granted", 8_000)}
    outcomes = set()
    events = [top_up("pay_x", 10_000), refund("re_x", "pay_x", 3_000)]
    for n, order in enumerate(itertools.permutations(events)):
        for event in [*order, *order]:  # each order, delivered twice over
            data = {**event.data, "payment_id": f"{event.data['payment_id']}_{n}"}
            if "refund_id" in data:
                data["refund_id"] = f"{data['refund_id']}_{n}"
            envelope = Envelope(type=event.type, source="cashier", subject=event.subject, data=data)
            await marketing.deliver(envelope, n % 2)
        published = [(t, b) for t, s, b in await bonus_events(marketing) if s == f"pay_x_{n}"]
        granted = sum(b for t, b in published if t == "topup.bonus_granted")
        revoked = sum(b for t, b in published if t == "topup.bonus_revoked")
        assert len(published) in (0, 2) and granted == revoked, published  # at most one grant, revoked once
        outcomes.add(granted - revoked)
    assert outcomes == {0}  # whatever the order, the holder keeps no bonus of a refunded top-up
    states = await grants(marketing)
    assert {states["pay_x_0"], states["pay_x_1"]} == {("revoked", 1_000), ("not_granted", 0)}
    kept = (await marketing.get(f"{PROMOTIONS}/{created['promotion_id']}", marketing.operator())).json()
    assert kept["remaining_budget_minor"] == 1_000_000 - 8_000 - 1_000  # a revoked bonus is not given back
    mine = (await marketing.get("/v1/marketing/me/topup-bonuses", marketing.user("usr_1"))).json()["data"]
    assert {g["payment_id"]: g["status"] for g in mine}["pay_big"] == "granted"


async def test_budget_and_per_holder_limit_hold_under_concurrent_top_ups_on_two_replicas(
    marketing: Marketing,
) -> None:
    budgeted = await promotion(
        marketing, tiers=[{"min_topup_minor": 10_000, "bonus_minor": 1_000}], budget_minor=5_500, per_holder_limit=1
    )
    many = [top_up(f"pay_h{i}", 10_000, holder_id=f"usr_h{i}") for i in range(30)]  # 30 holders, budget for 5
    same = [top_up(f"pay_s{i}", 10_000, holder_id="usr_same") for i in range(10)]  # one holder, 10 top-ups
    await asyncio.gather(*(marketing.deliver(e, i % 2) for i, e in enumerate([*many, *same])))
    states = await grants(marketing)
    granted = {p: b for p, (s, b) in states.items() if s == "granted"}
    assert len(states) == 40 and sum(granted.values()) == 5_000 and len(granted) == 5
    assert sum(1 for p in granted if p.startswith("pay_s")) <= 1
    after = (await marketing.get(f"{PROMOTIONS}/{budgeted['promotion_id']}", marketing.operator())).json()
    assert (after["remaining_budget_minor"], after["granted_count"]) == (500, 5)  # never below zero, never more
    assert len([e for e in await bonus_events(marketing) if e[0] == "topup.bonus_granted"]) == 5


async def test_one_holder_racing_top_ups_gets_exactly_its_limit(marketing: Marketing) -> None:
    await promotion(marketing, per_holder_limit=2)
    same = [top_up(f"pay_r{i}", 20_000, holder_id="usr_racer") for i in range(12)]
    await asyncio.gather(*(marketing.deliver(e, i % 2) for i, e in enumerate(same)))
    assert sorted(s for s, _ in (await grants(marketing)).values()).count("granted") == 2


async def test_a_bonus_past_its_validity_expires_once_and_is_then_not_revoked(marketing: Marketing) -> None:
    await promotion(marketing, per_holder_limit=5, bonus_valid_days=30)
    await marketing.deliver(top_up("pay_e1", 10_000))
    await marketing.deliver(top_up("pay_e2", 10_000))
    assert await expire_topup_bonuses_round(marketing.runtime) == 0  # not yet
    marketing.move_clock(timedelta(days=31))
    await marketing.deliver(refund("re_e2", "pay_e2", 10_000))  # revoked before the sweep: not expired
    assert await expire_topup_bonuses_round(marketing.runtime) == 1
    assert await expire_topup_bonuses_round(marketing.runtime) == 0  # once
    await marketing.deliver(refund("re_e1", "pay_e1", 10_000))  # expired: nothing left to revoke
    assert await grants(marketing) == {"pay_e1": ("expired", 1_000), "pay_e2": ("revoked", 1_000)}
    assert [(t, s) for t, s, _ in await bonus_events(marketing) if t != "topup.bonus_granted"] == [
        ("topup.bonus_revoked", "pay_e2"),
        ("topup.bonus_expired", "pay_e1"),
    ]
