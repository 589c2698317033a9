"""Bulk issue: bounded, resumable rounds (each item's claim idempotent), progress reported, the stock's
budget and limits obeyed, replicas sharing the work."""

from __future__ import annotations

import asyncio

from services.marketing.flows import claims
from services.marketing.flows.clock import system_clock
from services.marketing.tests.integration.conftest import Marketing, code


async def _round(m: Marketing, replica: int, batch_max: int) -> int:
    runtime = m.runtimes[replica]
    return await claims.bulk_issue_round(
        runtime.uow, batch_max=batch_max, day_timezone="Asia/Shanghai", now=system_clock
    )


async def test_bulk_issue_runs_in_rounds_reports_progress_and_stops_at_the_budget(marketing: Marketing) -> None:
    stock = await marketing.running_stock(budget_count=30)
    sid, op = stock["stock_id"], marketing.operator()
    users = [f"usr_{i}" for i in range(40)] + ["usr_0"]  # usr_0 twice: the per-user limit of 1 refuses the repeat
    created = await marketing.post(
        f"/v1/marketing/stocks/{sid}/bulk-issues", {"request_id": "b1", "user_ids": users}, op
    )
    assert created.status_code == 202, created.text
    job = created.json()
    assert (job["total_count"], job["pending_count"], job["done"]) == (41, 41, False)
    again = await marketing.post(f"/v1/marketing/stocks/{sid}/bulk-issues", {"request_id": "b1", "user_ids": users}, op)
    assert again.status_code == 200 and again.json()["bulk_issue_id"] == job["bulk_issue_id"]
    changed = await marketing.post(
        f"/v1/marketing/stocks/{sid}/bulk-issues", {"request_id": "b1", "user_ids": ["u"]}, op
    )
    assert code(changed) == "idempotency_key_reused"
    assert await _round(marketing, 0, 10) == 10  # a bounded round; the rest stays pending (resumable)
    path = f"/v1/marketing/stocks/{sid}/bulk-issues/{job['bulk_issue_id']}"
    progress = (await marketing.get(path, op)).json()
    assert (progress["issued_count"], progress["pending_count"]) == (10, 31)
    await asyncio.gather(_round(marketing, 0, 100), _round(marketing, 1, 100))  # two replicas share the rest
    progress = (await marketing.get(path, op)).json()
    assert (progress["issued_count"], progress["failed_count"], progress["pending_count"], progress["done"]) == (
        30,
        11,
        0,
        True,
    )
    stock_now = (await marketing.get(f"/v1/marketing/stocks/{sid}", op)).json()
    assert stock_now["remaining_count"] == 0
    stats = (await marketing.get(f"/v1/marketing/campaigns/{stock['campaign_id']}/stats", op)).json()
    assert (stats["issued_count"], stats["bulk_issued_count"], stats["claimed_count"]) == (30, 30, 0)


async def test_bulk_issue_is_bounded_and_scoped(marketing: Marketing) -> None:
    stock = await marketing.running_stock(marketing.merchant("mch_a"), funding_party="merchant")
    sid = stock["stock_id"]
    too_many = {"request_id": "b", "user_ids": [f"u{i}" for i in range(10_001)]}
    assert code(await marketing.post(f"/v1/marketing/stocks/{sid}/bulk-issues", too_many, marketing.operator())) == (
        "validation_failed"
    )
    body = {"request_id": "b", "user_ids": ["u1"]}
    refused = await marketing.post(f"/v1/marketing/stocks/{sid}/bulk-issues", body, marketing.merchant("mch_b"))
    assert code(refused) == "stock_not_found"
    missing = await marketing.get(f"/v1/marketing/stocks/{sid}/bulk-issues/bis_x", marketing.operator())
    assert code(missing) == "bulk_issue_not_found"
