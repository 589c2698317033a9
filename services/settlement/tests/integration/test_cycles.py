"""Settlement cycles end to end: calendar and cycle via the API, batches posted to a real ledger exactly
once (a crashed run and two concurrent runs), merchant statement and CSV scoped to the merchant."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import date, datetime
from zoneinfo import ZoneInfo

from services.settlement.config import Settings
from services.settlement.flows.ledger import LedgerClient
from services.settlement.flows.settle import run_cycle
from services.settlement.flows.splits import post_due_splits
from services.settlement.tests.integration.conftest import Harness, payment_event

CST = ZoneInfo("Asia/Shanghai")


async def setup_merchant(h: Harness) -> None:
    for rid, kind, holder in (
        ("mch_1", "merchant", "mch_1"),
        ("teacher", "partner", "tch_1"),
        ("platform", "platform", "platform"),
    ):
        assert (
            await h.client.put(f"/v1/settlement/receivers/{rid}", json={"kind": kind, "holder_id": holder})
        ).is_success
    assert (
        await h.client.put("/v1/settlement/merchants/mch_1/fee-rate", json={"platform_fee_rate_bps": 60})
    ).is_success
    rule = {
        "shares": [{"receiver_id": "teacher", "percent_bps": 3000}, {"receiver_id": "platform", "fixed_minor": 100}],
        "remainder_receiver_id": "mch_1",
    }
    assert (await h.client.put("/v1/settlement/merchants/mch_1/split-rule", json=rule)).is_success
    r = await h.client.put(
        "/v1/settlement/merchants/mch_1/cycle", json={"kind": "t_plus", "days": 1, "cutoff": "22:00"}
    )
    assert r.status_code == 200 and r.json()["cutoff"] == "22:00:00"
    # Wednesday 25 Nov 2026 is made a holiday for this test
    r = await h.client.put("/v1/settlement/calendar/2026-11-25", json={"business_day": False, "name": "test holiday"})
    assert r.status_code == 200
    assert (await h.client.get("/v1/settlement/calendar", params={"year": 2026})).json()["data"][0][
        "day"
    ] == "2026-11-25"


async def test_the_calendar_schedule_settles_each_day_as_payments_are(harness: Harness) -> None:
    """The operator console's calendar: a month's business days and each day's settle date under a holder's cycle,
    the same `settle_date` the consumers fix (T+1 skips the holiday and the weekend)."""
    h = harness
    await setup_merchant(h)
    r = await h.client.get("/v1/settlement/calendar/schedule", params={"month": "2026-11", "holder_id": "mch_1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["cycle"] == {"holder_id": "mch_1", "kind": "t_plus", "days": 1, "weekday": 0, "cutoff": "22:00:00"}
    days = {d["day"]: d for d in body["days"]}
    assert len(days) == 30
    assert days["2026-11-25"] == {"day": "2026-11-25", "business_day": False, "name": "test holiday",
                                  "settle_date": "2026-11-27"}  # fmt: skip
    assert days["2026-11-24"]["settle_date"] == "2026-11-26"  # Tue → the holiday is skipped
    assert (days["2026-11-28"]["business_day"], days["2026-11-28"]["settle_date"]) == (False, "2026-12-01")  # Sat
    default = (await h.client.get("/v1/settlement/calendar/schedule", params={"month": "2026-12"})).json()
    assert default["holder_id"] is None and default["cycle"]["kind"] == "t_plus" and len(default["days"]) == 31
    for bad in ({"month": "2026-13"}, {"month": "2026-1"}, {}, {"month": "2026-11", "year": "2026"}):
        assert (await h.client.get("/v1/settlement/calendar/schedule", params=bad)).status_code == 422, bad


async def run(h: Harness, day: date, ledger: LedgerClient | None = None) -> tuple[int, int, int]:
    settings = h.runtime.settings
    assert isinstance(settings, Settings)
    result = await run_cycle(h.runtime.uow, ledger or h.runtime.extras["ledger"], settings, day)
    return result.batches_built, result.batches_posted, result.batches_failed


async def test_cycles_settle_each_fen_once(harness: Harness) -> None:
    h = harness
    await setup_merchant(h)
    await h.deliver(payment_event("pay_c1", succeeded_at=datetime(2026, 11, 24, 10, tzinfo=CST)))  # Tue
    await h.deliver(payment_event("pay_c2", succeeded_at=datetime(2026, 11, 24, 22, 30, tzinfo=CST)))  # after cutoff
    settings = h.runtime.settings
    assert isinstance(settings, Settings)
    assert await post_due_splits(h.runtime.uow, h.runtime.extras["ledger"], settings) == 2

    assert await run(h, date(2026, 11, 25)) == (0, 0, 0)  # T+1 skips the holiday: nothing due yet

    # a run that dies before reaching the ledger: batches are built, nothing is posted
    dead = LedgerClient.build("http://127.0.0.1:9", h.runtime.uow, timeout_seconds=0.5)
    try:
        assert await run(h, date(2026, 11, 26), ledger=dead) == (2, 0, 2)
    finally:
        await dead.aclose()
    # the restart and a second runner at the same time: each batch posted once
    both = await asyncio.gather(run(h, date(2026, 11, 26)), run(h, date(2026, 11, 26)))
    assert sum(b for b, _, _ in both) == 0 and sum(p for _, p, _ in both) == 2
    assert await run(h, date(2026, 11, 26)) == (0, 0, 0)

    # pay_c1 only (pay_c2 was after the 22:00 cutoff: trade day 25th, a holiday → due on the 27th)
    assert await h.balance("mch_1", "merchant_settled") == 9940 - 2982 - 100
    assert await h.balance("tch_1", "merchant_settled") == 2982
    assert await h.balance("tch_1", "merchant_pending") == 2982  # pay_c2's share, not yet due
    assert await run(h, date(2026, 11, 27)) == (2, 2, 0)
    assert await h.balance("mch_1", "merchant_settled") == 2 * (9940 - 2982 - 100)
    assert await h.balance("tch_1", "merchant_pending") == 0
    assert await h.balance("mch_1", "merchant_pending") == -2 * 9940  # the cashier's §3.1 credit is not in this test

    batches = (await h.client.get("/v1/settlement/batches", params={"holder_id": "mch_1"})).json()["data"]
    assert [(b["cycle_date"], b["amount_minor"], b["status"]) for b in batches] == [
        ("2026-11-27", 6858, "posted"),
        ("2026-11-26", 6858, "posted"),
    ]
    assert len({b["ledger_transfer_id"] for b in batches}) == 2
    # one batch.settled per batch, though runs crashed, raced and repeated
    settled = [e["data"] for e in await h.published("batch.settled")]
    assert sorted((e["holder_id"], e["cycle_date"], e["amount_minor"]) for e in settled) == [
        ("mch_1", "2026-11-26", 6858), ("mch_1", "2026-11-27", 6858),
        ("tch_1", "2026-11-26", 2982), ("tch_1", "2026-11-27", 2982),
    ]  # fmt: skip
    mine = next(e for e in settled if e["holder_id"] == "mch_1" and e["cycle_date"] == "2026-11-26")
    assert mine["amounts_by_kind"] == {"payment": 9940, "split": -3082}
    assert mine["ledger_transfer_id"] == batches[1]["ledger_transfer_id"]

    mine = await h.client.get("/v1/statements/batches", params={"limit": 1}, headers={"X-Juhe-Merchant-Id": "mch_1"})
    more = await h.client.get("/v1/statements/batches", params={"cursor": mine.json()["next_cursor"]},
                              headers={"X-Juhe-Merchant-Id": "mch_1"})  # fmt: skip
    assert [b["cycle_date"] for b in mine.json()["data"] + more.json()["data"]] == ["2026-11-27", "2026-11-26"]
    assert more.json()["next_cursor"] is None
    theirs = await h.client.get("/v1/statements/batches", headers={"X-Juhe-Merchant-Id": "mch_2"})
    assert theirs.json()["data"] == []
    assert (await h.client.get("/v1/settlement/batches", headers={"X-Juhe-Merchant-Id": "mch_1"})).status_code == 403

    statement = await h.client.get("/v1/statements/current", headers={"X-Juhe-Merchant-Id": "mch_1"})
    assert statement.status_code == 200
    assert statement.json()["balances"] == {"CNY": {"settled_minor": 13716, "settling_minor": 0, "pending_minor": 0}}
    other = await h.client.get("/v1/statements/current", headers={"X-Juhe-Merchant-Id": "mch_2"})
    assert other.json()["balances"] == {} and other.json()["batches"] == []
    assert (await h.client.get("/v1/statements/current")).status_code in (401, 403)

    exported = await h.client.get("/v1/statements/transactions.csv", headers={"X-Juhe-Merchant-Id": "mch_1"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["payment_id"], r["amount_minor"], r["platform_fee_minor"], r["settle_date"]) for r in rows] == [
        ("pay_c1", "10000", "60", "2026-11-26"),
        ("pay_c2", "10000", "60", "2026-11-27"),
    ]
    empty = await h.client.get("/v1/statements/transactions.csv", headers={"X-Juhe-Merchant-Id": "mch_2"})
    assert (
        empty.text.strip() == "payment_id,merchant_order_no,channel,status,amount_minor,currency,refunded_minor,"
        "platform_fee_minor,succeeded_at,settle_date"
    )
    h.verify_ledger()


async def test_bad_cycle_is_problem_json(settlement_only: Harness) -> None:
    r = await settlement_only.client.put("/v1/settlement/merchants/m/cycle", json={"kind": "d_plus", "days": 31})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "validation_failed"
    r = await settlement_only.client.put("/v1/settlement/merchants/m/cycle", json={"kind": "monthly"})
    assert r.status_code == 422
