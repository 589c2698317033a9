"""Settlement cycles end to end: calendar and cycle via the API, batches posted to a real ledger exactly
once (a crashed run and two concurrent runs), merchant statement and CSV scoped to the merchant."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import date, datetime
from zoneinfo import ZoneInfo

from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.settings import DEMO_INTERNAL_TOKEN_SECRET
from services.settlement.clients.ledger import LedgerClient
from services.settlement.flows.consistency import run_check
from services.settlement.flows.settle import run_cycle
from services.settlement.flows.splits import post_due_splits
from services.settlement.store.ledger_accounts import MirroredAccounts
from services.settlement.tests.integration.conftest import Harness, payment_event, refund_event

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
    assert days["2026-11-25"] == {
        "day": "2026-11-25",
        "business_day": False,
        "name": "test holiday",
        "settle_date": "2026-11-27",
    }
    assert days["2026-11-24"]["settle_date"] == "2026-11-26"  # Tue → the holiday is skipped
    assert (days["2026-11-28"]["business_day"], days["2026-11-28"]["settle_date"]) == (False, "2026-12-01")  # Sat
    default = (await h.client.get("/v1/settlement/calendar/schedule", params={"month": "2026-12"})).json()
    assert default["holder_id"] is None and default["cycle"]["kind"] == "t_plus" and len(default["days"]) == 31
    for bad in ({"month": "2026-13"}, {"month": "2026-1"}, {}, {"month": "2026-11", "year": "2026"}):
        assert (await h.client.get("/v1/settlement/calendar/schedule", params=bad)).status_code == 422, bad


async def run(h: Harness, day: date, ledger: LedgerClient | None = None) -> tuple[int, int, int]:
    settings = h.context.settings
    result = await run_cycle(h.runtime.uow, ledger or h.context.ledger, settings, day)
    return result.batches_built, result.batches_posted, result.batches_failed


async def test_cycles_settle_each_fen_once(harness: Harness) -> None:
    h = harness
    await setup_merchant(h)
    await h.deliver(payment_event("pay_c1", succeeded_at=datetime(2026, 11, 24, 10, tzinfo=CST)))  # Tue
    await h.deliver(payment_event("pay_c2", succeeded_at=datetime(2026, 11, 24, 22, 30, tzinfo=CST)))  # after cutoff
    settings = h.context.settings
    assert await post_due_splits(h.runtime.uow, h.context.ledger, settings) == 2

    assert await run(h, date(2026, 11, 25)) == (0, 0, 0)  # T+1 skips the holiday: nothing due yet

    # a run that dies before reaching the ledger: batches are built, nothing is posted
    dead = LedgerClient.build("http://127.0.0.1:9", MirroredAccounts(h.runtime.uow), timeout_seconds=0.5)
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
        ("mch_1", "2026-11-26", 6858),
        ("mch_1", "2026-11-27", 6858),
        ("tch_1", "2026-11-26", 2982),
        ("tch_1", "2026-11-27", 2982),
    ]
    mine = next(e for e in settled if e["holder_id"] == "mch_1" and e["cycle_date"] == "2026-11-26")
    assert mine["amounts_by_kind"] == {"payment": 9940, "split": -3082}
    assert mine["ledger_transfer_id"] == batches[1]["ledger_transfer_id"]

    mine = await h.client.get("/v1/statements/batches", params={"limit": 1}, headers={"X-Juhe-Merchant-Id": "mch_1"})
    more = await h.client.get(
        "/v1/statements/batches", params={"cursor": mine.json()["next_cursor"]}, headers={"X-Juhe-Merchant-Id": "mch_1"}
    )
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
        "platform_fee_minor,succeeded_at,settle_date,livemode"
    )
    h.verify_ledger()


async def _cashier_credit(h: Harness, payment_id: str, amount_minor: int, *, livemode: bool) -> None:
    """What the ledger's consumer of the cashier's `payment.succeeded` posts to the merchant's 2201 (the cashier is
    not in this harness), in the payment's book, with the chart accounts and keys it uses."""
    ledger: LedgerClient = h.context.ledger
    clearing = await ledger.channel_account_id("channel_clearing", "wechatpay", "CNY", livemode=livemode)
    pending = await ledger.account_id("mch_m", "merchant_pending", "CNY", livemode=livemode)
    await ledger.post_transfer(
        idempotency_key=f"{payment_id}:succeeded",
        postings=[
            {"account_id": clearing, "direction": "debit", "amount_minor": amount_minor, "currency": "CNY"},
            {"account_id": pending, "direction": "credit", "amount_minor": amount_minor, "currency": "CNY"},
        ],
    )


async def test_test_money_is_settled_and_paid_out_apart_from_live_money(harness: Harness) -> None:
    """docs/test-mode.md, "Test and live never mix": a test payment and a live one (an old event without
    `livemode`) of one merchant are settled by the same cycle into two batches, each moving only its own book;
    the settlement ↔ ledger check compares each mode with its own book; the merchant's statement shows the key's
    mode; a test payout is paid from the test book and simulated (no bank); the ledger verifies per book."""
    h = harness
    assert (
        await h.client.put("/v1/settlement/merchants/mch_m/fee-rate", json={"platform_fee_rate_bps": 60})
    ).is_success
    tuesday = datetime(2026, 11, 24, 10, tzinfo=CST)
    await h.deliver(payment_event("pay_live", merchant_id="mch_m", succeeded_at=tuesday, fee_minor=None))
    await h.deliver(
        payment_event(
            "pay_test",
            merchant_id="mch_m",
            amount_minor=3000,
            succeeded_at=tuesday,
            fee_minor=None,
            extra={"livemode": False},
        )
    )
    refund = refund_event("re_test", "pay_test", 1000, merchant_id="mch_m")
    refund.data.update(livemode=False, succeeded_at=tuesday.isoformat())
    await h.deliver(refund)
    await _cashier_credit(h, "pay_live", 9940, livemode=True)  # 10000 − 60 platform fee
    await _cashier_credit(h, "pay_test", 2982 - 994, livemode=False)  # 3000 − 18, refunded 1000 − 6
    settings = h.context.settings
    checked = await run_check(h.runtime.uow, h.context.ledger, settings)
    assert checked["ok"] is True and checked["mismatches"] == [] and checked["unconfirmed"] == [], checked

    assert await run(h, date(2026, 11, 25)) == (2, 2, 0)  # one batch per mode
    batches = (await h.client.get("/v1/settlement/batches", params={"holder_id": "mch_m"})).json()["data"]
    assert sorted((b["livemode"], b["amount_minor"]) for b in batches) == [(False, 1988), (True, 9940)]
    assert await h.balance("mch_m", "merchant_settled") == 9940
    assert await h.balance("mch_m", "merchant_settled", livemode=False) == 1988
    assert await h.balance("mch_m", "merchant_pending") == 0
    assert await h.balance("mch_m", "merchant_pending", livemode=False) == 0
    settled = {e["data"]["livemode"]: e["data"]["amount_minor"] for e in await h.published("batch.settled")}
    assert settled == {True: 9940, False: 1988}

    # The merchant sees its key's mode; a caller without one (a console) asks for one mode.
    console = {"X-Juhe-Merchant-Id": "mch_m"}
    live = await h.client.get("/v1/statements/current", params={"livemode": "true"}, headers=console)
    assert live.json()["balances"] == {"CNY": {"settled_minor": 9940, "settling_minor": 0, "pending_minor": 0}}
    token = mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="key_test_m", merchant_id="mch_m", mode="test")
    as_test = {IDENTITY_HEADER: token}
    test = await h.client.get("/v1/statements/current", headers=as_test)
    assert test.json()["balances"] == {"CNY": {"settled_minor": 1988, "settling_minor": 0, "pending_minor": 0}}
    exported = await h.client.get("/v1/statements/transactions.csv", headers=as_test)
    assert [(r["payment_id"], r["livemode"]) for r in csv.DictReader(io.StringIO(exported.text))] == [
        ("pay_test", "false")
    ]
    both = await h.client.get("/v1/statements/batches", headers=console)
    assert sorted(b["livemode"] for b in both.json()["data"]) == [False, True]
    asked = await h.client.get("/v1/statements/batches", params={"livemode": "false"}, headers=as_test)
    assert [b["amount_minor"] for b in asked.json()["data"]] == [1988]
    wrong = await h.client.get("/v1/statements/batches", params={"livemode": "true"}, headers=as_test)
    assert wrong.status_code == 422 and wrong.json()["code"] == "validation_failed"

    # A test payout: paid from the test book, simulated as paid (the bank is never asked), live money untouched. The
    # test escrow holds what the sandbox settled (§3.5 of a test reconciliation, posted here directly).
    ledger: LedgerClient = h.context.ledger
    escrow = await ledger.account_id("platform", "escrow_bank", "CNY", livemode=False)
    clearing = await ledger.channel_account_id("channel_clearing", "wechatpay", "CNY", livemode=False)
    await ledger.post_transfer(
        idempotency_key="stl_test_escrow:channel",
        postings=[
            {"account_id": escrow, "direction": "debit", "amount_minor": 1988, "currency": "CNY"},
            {"account_id": clearing, "direction": "credit", "amount_minor": 1988, "currency": "CNY"},
        ],
    )
    payout = await h.client.post(
        "/v1/payouts",
        headers=as_test,
        json={
            "amount_minor": 1500,
            "currency": "CNY",
            "account_no": "6222000000000001",
            "account_name": "M",
            "idempotency_key": "po-test-1",
        },
    )
    assert payout.status_code == 201, payout.text
    assert (payout.json()["status"], payout.json()["livemode"], payout.json()["bank_ref"]) == ("succeeded", False, None)
    assert await h.balance("mch_m", "merchant_settled", livemode=False) == 1988 - 1500
    assert await h.balance("mch_m", "merchant_settled") == 9940
    mine = await h.client.get("/v1/payouts", headers=as_test)
    assert [p["payout_id"] for p in mine.json()["data"]] == [payout.json()["payout_id"]]
    token = mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="key_live_m", merchant_id="mch_m", mode="live")
    as_live = await h.client.get(f"/v1/payouts/{payout.json()['payout_id']}", headers={IDENTITY_HEADER: token})
    assert as_live.status_code == 404
    h.verify_ledger()


async def test_bad_cycle_is_problem_json(settlement_only: Harness) -> None:
    r = await settlement_only.client.put("/v1/settlement/merchants/m/cycle", json={"kind": "d_plus", "days": 31})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "validation_failed"
    r = await settlement_only.client.put("/v1/settlement/merchants/m/cycle", json={"kind": "monthly"})
    assert r.status_code == 422
