"""Stocks and claims through the HTTP API on the real PostgreSQL: budgets and limits exact under concurrency
across two app instances, idempotent claims, scoping, and every refusal leaving nothing changed."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select

from services.marketing.store.tables import claim_counters, coupon_stocks, coupons
from services.marketing.tests.integration.conftest import Marketing, code


async def _coupon_count(m: Marketing, stock_id: str) -> int:
    async with m.runtime.uow.read() as conn:
        return int((await conn.execute(select(func.count()).where(coupons.c.stock_id == stock_id))).scalar_one())


async def _stock(m: Marketing, stock_id: str) -> dict[str, int]:
    async with m.runtime.uow.read() as conn:
        row = (await conn.execute(select(coupon_stocks).where(coupon_stocks.c.stock_id == stock_id))).mappings().one()
    return dict(row)


async def test_500_concurrent_claims_on_two_replicas_issue_exactly_the_budget(marketing: Marketing) -> None:
    stock = await marketing.running_stock(budget_count=100)
    responses = await asyncio.gather(
        *(marketing.claim(stock["stock_id"], user_id=f"usr_{i}", request_id=f"r{i}", replica=i % 2) for i in range(500))
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 100
    assert {code(r) for r in responses if r.status_code != 201} == {"stock_exhausted"}
    row = await _stock(marketing, stock["stock_id"])
    assert (row["remaining_count"], row["remaining_budget_minor"]) == (0, 0)
    assert await _coupon_count(marketing, stock["stock_id"]) == 100
    assert len(await marketing.events("coupon.claimed")) == 100


async def test_a_budget_in_fen_caps_claims_before_the_count(marketing: Marketing) -> None:
    stock = await marketing.running_stock(budget_count=100, budget_minor=25_00)  # room for 2 coupons of 10.00
    responses = await asyncio.gather(
        *(marketing.claim(stock["stock_id"], user_id=f"usr_{i}", request_id="r", replica=i % 2) for i in range(20))
    )
    assert [r.status_code for r in responses].count(201) == 2
    row = await _stock(marketing, stock["stock_id"])
    assert (row["remaining_count"], row["remaining_budget_minor"]) == (98, 5_00)


async def test_a_per_user_limit_of_one_holds_under_50_concurrent_claims(marketing: Marketing) -> None:
    stock = await marketing.running_stock(per_user_limit=1)
    responses = await asyncio.gather(
        *(marketing.claim(stock["stock_id"], request_id=f"r{i}", replica=i % 2) for i in range(50))
    )
    assert [r.status_code for r in responses].count(201) == 1
    assert {code(r) for r in responses if r.status_code != 201} == {"claim_limit_reached"}
    assert await _coupon_count(marketing, stock["stock_id"]) == 1
    assert (await _stock(marketing, stock["stock_id"]))["remaining_count"] == 99


async def test_daily_limits_per_user_and_per_stock(marketing: Marketing) -> None:
    stock = await marketing.running_stock(per_user_limit=5, per_user_daily_limit=2, daily_count_limit=3)
    sid = stock["stock_id"]
    assert [(await marketing.claim(sid, request_id=f"r{i}")).status_code for i in range(2)] == [201, 201]
    assert code(await marketing.claim(sid, request_id="r3")) == "claim_limit_reached"
    assert (await marketing.claim(sid, user_id="usr_2")).status_code == 201
    assert code(await marketing.claim(sid, user_id="usr_3")) == "daily_limit_reached"
    assert await _coupon_count(marketing, sid) == 3
    assert (await _stock(marketing, sid))["remaining_count"] == 97


async def test_a_claim_is_idempotent_by_request_id_even_concurrently(marketing: Marketing) -> None:
    stock = await marketing.running_stock(per_user_limit=3)
    responses = await asyncio.gather(*(marketing.claim(stock["stock_id"], replica=i % 2) for i in range(10)))
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["coupon_id"] for r in responses}) == 1
    assert (await _stock(marketing, stock["stock_id"]))["remaining_count"] == 99
    other = await marketing.running_stock()
    assert code(await marketing.claim(other["stock_id"])) == "idempotency_key_reused"


async def test_coupon_shape_and_listing(marketing: Marketing) -> None:
    stock = await marketing.running_stock(valid_days_after_claim=7)
    coupon = (await marketing.claim(stock["stock_id"])).json()
    assert coupon["status"] == "available" and coupon["face_value_minor"] == 1000
    assert len(coupon["code"]) == 16 and coupon["qr_payload"] == "JUHECPN1:" + coupon["code"]
    mine = (await marketing.get("/v1/marketing/me/coupons", marketing.user())).json()
    assert [c["coupon_id"] for c in mine["data"]] == [coupon["coupon_id"]]
    assert (await marketing.get("/v1/marketing/me/coupons", marketing.user("usr_2"))).json()["data"] == []
    theirs = await marketing.get(f"/v1/marketing/me/coupons/{coupon['coupon_id']}", marketing.user("usr_2"))
    assert code(theirs) == "coupon_not_found"
    event = (await marketing.events("coupon.claimed"))[0]
    assert event["subject"] == coupon["coupon_id"] and event["data"]["face_value_minor"] == 1000


async def test_stock_transitions_are_named_and_guarded(marketing: Marketing) -> None:
    stock = await marketing.running_stock()
    sid, op = stock["stock_id"], marketing.operator()
    assert code(await marketing.post(f"/v1/marketing/stocks/{sid}/start", {}, op)) == "invalid_stock_transition"
    assert (await marketing.post(f"/v1/marketing/stocks/{sid}/pause", {}, op)).json()["status"] == "paused"
    assert code(await marketing.claim(sid)) == "stock_not_running"
    assert (await marketing.post(f"/v1/marketing/stocks/{sid}/resume", {}, op)).json()["status"] == "running"
    assert (await marketing.claim(sid)).status_code == 201
    assert (await marketing.post(f"/v1/marketing/stocks/{sid}/end", {}, op)).json()["status"] == "ended"
    assert code(await marketing.post(f"/v1/marketing/stocks/{sid}/resume", {}, op)) == "invalid_stock_transition"
    assert code(await marketing.claim(sid, request_id="r2")) == "stock_not_running"


async def test_concurrent_pauses_one_wins(marketing: Marketing) -> None:
    sid = (await marketing.running_stock())["stock_id"]
    results = await asyncio.gather(
        *(
            marketing.post(f"/v1/marketing/stocks/{sid}/pause", {}, marketing.operator(), replica=i % 2)
            for i in range(6)
        )
    )
    assert sorted(r.status_code for r in results) == [200] + [409] * 5


async def test_merchants_manage_their_own_stocks_only(marketing: Marketing) -> None:
    mine = marketing.merchant("mch_a")
    stock = await marketing.running_stock(mine, funding_party="merchant")
    assert stock["owner_merchant_id"] == "mch_a" and stock["merchant_ids"] == ["mch_a"]
    sid = stock["stock_id"]
    other = marketing.merchant("mch_b")
    assert code(await marketing.get(f"/v1/marketing/stocks/{sid}", other)) == "stock_not_found"
    assert code(await marketing.post(f"/v1/marketing/stocks/{sid}/pause", {}, other)) == "stock_not_found"
    assert (await marketing.get("/v1/marketing/stocks", other)).json()["data"] == []
    assert [s["stock_id"] for s in (await marketing.get("/v1/marketing/stocks", mine)).json()["data"]] == [sid]
    assert (await marketing.get(f"/v1/marketing/stocks/{sid}", marketing.operator())).status_code == 200
    assert (await marketing.post(f"/v1/marketing/stocks/{sid}/pause", {}, marketing.operator())).status_code == 200
    campaign = await marketing.campaign(mine)
    base = {
        "campaign_id": campaign,
        "name": "x",
        "discount_kind": "fixed",
        "amount_off_minor": 100,
        "valid_days_after_claim": 1,
        "budget_count": 1,
    }
    for funding in (
        {"funding_party": "platform"},
        {"funding_party": "shared", "platform_share_bps": 5000},
        {"funding_party": "merchant", "merchant_ids": ["mch_b"]},
    ):
        refused = await marketing.post("/v1/marketing/stocks", {**base, **funding}, mine)
        assert refused.status_code == 403 and code(refused) == "funding_not_allowed"
    theirs = await marketing.post("/v1/marketing/stocks", {**base, "funding_party": "merchant"}, other)
    assert code(theirs) == "campaign_not_found"
    assert code(await marketing.post("/v1/marketing/campaigns", {"name": "x"}, marketing.user())) == "forbidden"
    assert (
        code(await marketing.post("/v1/marketing/me/claims", {"stock_id": sid, "request_id": "r"}, mine)) == "forbidden"
    )
    async with marketing.runtime.uow.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(coupon_stocks))).scalar_one() == 1


async def test_invalid_stocks_are_refused_and_nothing_is_created(marketing: Marketing) -> None:
    campaign = await marketing.campaign()
    base = {
        "campaign_id": campaign,
        "name": "x",
        "discount_kind": "fixed",
        "amount_off_minor": 1000,
        "valid_days_after_claim": 1,
        "funding_party": "platform",
        "budget_count": 10,
    }
    bad: list[tuple[dict[str, Any], str]] = [
        ({"discount_kind": "percent"}, "percent_off_bps"),
        ({"discount_kind": "percent", "amount_off_minor": None, "percent_off_bps": 1000}, "discount_cap_minor"),
        ({"funding_party": "shared"}, "platform_share_bps"),
        ({"funding_party": "merchant", "platform_share_bps": 100}, "platform_share_bps"),
        ({"budget_minor": 999}, "budget_minor"),
        ({"valid_days_after_claim": None}, "valid_until"),
        (
            {
                "valid_days_after_claim": None,
                "valid_from": "2030-01-02T00:00:00Z",
                "valid_until": "2030-01-01T00:00:00Z",
            },
            "valid_from",
        ),
    ]
    for change, field in bad:
        refused = await marketing.post("/v1/marketing/stocks", {**base, **change}, marketing.operator())
        assert (refused.status_code, code(refused), refused.json().get("field")) == (422, "invalid_stock", field)
    assert code(
        await marketing.post("/v1/marketing/stocks", {**base, "amount_off_minor": 1.5}, marketing.operator())
    ) == ("validation_failed")
    missing = await marketing.post("/v1/marketing/stocks", {**base, "campaign_id": "cmp_x"}, marketing.operator())
    assert code(missing) == "campaign_not_found"
    assert code(await marketing.claim("cps_nope")) == "stock_not_found"
    assert code(await marketing.get("/v1/marketing/stocks/cps_nope", marketing.operator())) == "stock_not_found"
    async with marketing.runtime.uow.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(coupon_stocks))).scalar_one() == 0
        assert (await conn.execute(select(func.count()).select_from(claim_counters))).scalar_one() == 0


async def test_a_stock_past_its_window_issues_nothing(marketing: Marketing) -> None:
    stock = await marketing.running_stock(valid_days_after_claim=None, valid_until="2020-01-01T00:00:00Z")
    assert code(await marketing.claim(stock["stock_id"])) == "stock_not_running"
    assert (await _stock(marketing, stock["stock_id"]))["remaining_count"] == 100


async def test_percent_stock_reserves_its_cap(marketing: Marketing) -> None:
    stock = await marketing.running_stock(
        discount_kind="percent", amount_off_minor=None, percent_off_bps=1500, discount_cap_minor=2000, budget_count=3
    )
    assert stock["face_value_minor"] == 2000 and stock["budget_minor"] == 6000
    await marketing.claim(stock["stock_id"])
    assert (await _stock(marketing, stock["stock_id"]))["remaining_budget_minor"] == 4000


async def test_a_budget_is_set_by_target_totals_exactly_alongside_concurrent_claims(marketing: Marketing) -> None:
    stock = await marketing.running_stock(budget_count=10)
    sid, op = stock["stock_id"], marketing.operator()
    path = f"/v1/marketing/stocks/{sid}/budget"
    raised, *claims = await asyncio.gather(
        marketing.post(path, {"budget_count": 30, "budget_minor": 30_000}, op, replica=1),
        *(marketing.claim(sid, user_id=f"usr_{i}", request_id="r", replica=i % 2) for i in range(40)),
    )
    assert raised.status_code == 200, raised.text
    issued = [r.status_code for r in claims].count(201)
    assert 10 <= issued <= 30 and await _coupon_count(marketing, sid) == issued
    row = await _stock(marketing, sid)
    assert (row["budget_count"], row["remaining_count"], row["remaining_budget_minor"]) == (
        30,
        30 - issued,
        30_000 - issued * 1000,
    )
    again = await marketing.post(path, {"budget_count": 30, "budget_minor": 30_000}, op)
    assert again.json()["remaining_count"] == 30 - issued  # the same target twice: nothing more
    below = await marketing.post(path, {"budget_count": issued - 1, "budget_minor": 30_000}, op)
    assert code(below) == "budget_below_issued" and below.json()["issued_count"] == issued
    exact = await marketing.post(path, {"budget_count": issued, "budget_minor": issued * 1000}, op)
    assert (exact.json()["remaining_count"], exact.json()["remaining_budget_minor"]) == (0, 0)
    assert code(await marketing.claim(sid, user_id="usr_last")) == "stock_exhausted"
    assert code(await marketing.post(path, {"budget_count": 50, "budget_minor": 999}, op)) == "invalid_stock"
    assert code(await marketing.post(path, {"budget_count": 50, "budget_minor": 50_000}, marketing.merchant())) == (
        "stock_not_found"
    )
    await marketing.post(f"/v1/marketing/stocks/{sid}/end", {}, op)
    ended = await marketing.post(path, {"budget_count": 50, "budget_minor": 50_000}, op)
    assert code(ended) == "invalid_stock_transition"
    assert (await _stock(marketing, sid))["budget_count"] == issued


async def test_an_operator_acting_for_a_merchant_makes_that_merchants_campaign(marketing: Marketing) -> None:
    for_merchant = marketing.headers(platform="plt_demo", merchant_id="mch_a")
    campaign = (await marketing.post("/v1/marketing/campaigns", {"name": "c"}, for_merchant)).json()
    assert campaign["owner_merchant_id"] == "mch_a"
    mine = (await marketing.get("/v1/marketing/campaigns", marketing.merchant("mch_a"))).json()["data"]
    assert [c["campaign_id"] for c in mine] == [campaign["campaign_id"]]
    assert (await marketing.get("/v1/marketing/campaigns", marketing.merchant("mch_b"))).json()["data"] == []
    stats = await marketing.get(f"/v1/marketing/campaigns/{campaign['campaign_id']}/stats", marketing.merchant("mch_b"))
    assert code(stats) == "campaign_not_found"
