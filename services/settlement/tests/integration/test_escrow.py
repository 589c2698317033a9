"""Escrow (担保交易) against a real ledger: the split is a hold until confirmed; confirm twice, concurrently
with the auto-confirm deadline, splits exactly once; a refund before confirmation voids the hold."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select, update

from services.settlement.flows.escrow import auto_confirm_due
from services.settlement.flows.splits import post_due_splits
from services.settlement.store.tables import settlement_entries, split_executions
from services.settlement.tests.integration.conftest import Harness, payment_event, refund_event


async def configure(h: Harness, auto_confirm_seconds: int | None) -> None:
    for rid, kind, holder in (("mch_1", "merchant", "mch_1"), ("teacher", "partner", "tch_1")):
        assert (
            await h.client.put(f"/v1/settlement/receivers/{rid}", json={"kind": kind, "holder_id": holder})
        ).is_success
    assert (
        await h.client.put("/v1/settlement/merchants/mch_1/fee-rate", json={"platform_fee_rate_bps": 60})
    ).is_success
    rule = {
        "shares": [{"receiver_id": "teacher", "percent_bps": 3000}],
        "remainder_receiver_id": "mch_1",
        "mode": "escrow",
        "auto_confirm_seconds": auto_confirm_seconds,
    }
    r = await h.client.put("/v1/settlement/merchants/mch_1/split-rule", json=rule)
    assert r.status_code == 200 and r.json()["mode"] == "escrow"


async def rounds(h: Harness) -> int:
    settings = h.context.settings
    return await post_due_splits(h.runtime.uow, h.context.ledger, settings)


async def pending_credits(h: Harness, holder: str) -> int:
    async with httpx.AsyncClient(base_url=h.ledger_url) as ledger:
        accounts = (await ledger.get("/v1/accounts", params={"holder_id": holder})).json()["data"]
    return sum(int(a["balances"]["credits_pending"]) for a in accounts if a["kind"] == "merchant_pending")


async def test_confirm_twice_and_deadline_split_once(harness: Harness) -> None:
    h = harness
    await configure(h, auto_confirm_seconds=3600)
    await h.deliver(payment_event("pay_e1"))
    await rounds(h)
    [split] = (await h.client.get("/v1/settlement/payments/pay_e1")).json()["splits"]
    assert (split["mode"], split["status"]) == ("escrow", "held")
    assert await h.balance("tch_1", "merchant_pending") == 0 and await pending_credits(h, "tch_1") == 2982

    # the deadline passes while the platform confirms twice: three racers, one split
    async with h.runtime.uow.begin() as tx:
        await tx.conn.execute(update(split_executions).values(confirm_deadline=func.now()))
    settings = h.context.settings
    results = await asyncio.gather(
        h.client.post("/v1/settlement/payments/pay_e1/confirm"),
        h.client.post("/v1/settlement/payments/pay_e1/confirm"),
        auto_confirm_due(h.runtime.uow, h.context.ledger, settings),
    )
    assert [r.status_code for r in results[:2]] == [200, 200]
    await rounds(h)
    [split] = (await h.client.get("/v1/settlement/payments/pay_e1")).json()["splits"]
    assert split["status"] == "posted" and split["confirmed_by"] in ("platform", "auto_confirm")
    assert await h.balance("tch_1", "merchant_pending") == 2982 and await pending_credits(h, "tch_1") == 0
    again = await h.client.post("/v1/settlement/payments/pay_e1/confirm")
    assert again.status_code == 200 and again.json()["status"] == "posted"
    async with h.runtime.uow.read() as conn:
        teacher_entries = await conn.scalar(
            select(func.count()).select_from(settlement_entries).where(settlement_entries.c.holder_id == "tch_1")
        )
    assert teacher_entries == 1
    h.verify_ledger()


async def test_refund_before_confirm_voids_the_hold(harness: Harness) -> None:
    h = harness
    await configure(h, auto_confirm_seconds=0)  # due at once: the auto-confirm round takes it
    await h.deliver(payment_event("pay_e2"))
    await rounds(h)
    await h.deliver(refund_event("re_e2", "pay_e2", 5000))  # before confirmation
    await rounds(h)  # the first hold voided, the rest held again
    splits = (await h.client.get("/v1/settlement/payments/pay_e2")).json()["splits"]
    assert [(s["kind"], s["status"], s["base_minor"]) for s in splits] == [
        ("split", "voided", 9940),
        ("split", "held", 4970),
    ]
    assert await pending_credits(h, "tch_1") == 1491
    settings = h.context.settings
    assert await auto_confirm_due(h.runtime.uow, h.context.ledger, settings) == 1
    assert await h.balance("tch_1", "merchant_pending") == 1491
    # the rest refunded after confirmation: reversed proportionally, to zero
    await h.deliver(refund_event("re_e3", "pay_e2", 5000))
    await rounds(h)
    assert await h.balance("tch_1", "merchant_pending") == 0 and await pending_credits(h, "tch_1") == 0
    assert await h.balance("mch_1", "merchant_pending") == 0
    r = await h.client.post("/v1/settlement/payments/pay_none/confirm")
    assert r.status_code == 404 and r.json()["code"] == "split_not_found"
    h.verify_ledger()


async def test_explicit_split_under_an_escrow_rule(harness: Harness) -> None:
    """An explicit split (docs/contracts.md §1) with an escrow rule: the explicit amounts are held, re-held scaled
    after a refund before confirmation, and posted on confirm."""
    h = harness
    await configure(h, auto_confirm_seconds=None)
    await h.deliver(payment_event("pay_e3", extra={"split": [{"receiver_id": "teacher", "amount_minor": 2000}]}))
    await rounds(h)
    [split] = (await h.client.get("/v1/settlement/payments/pay_e3")).json()["splits"]
    assert (split["status"], split["allocations"]) == ("held", {"teacher": 2000, "@payee": 7940})
    assert await pending_credits(h, "tch_1") == 2000
    await h.deliver(refund_event("re_e4", "pay_e3", 5000))
    await rounds(h)
    held = (await h.client.get("/v1/settlement/payments/pay_e3")).json()["splits"][-1]
    assert (held["status"], held["allocations"]) == ("held", {"teacher": 1000, "@payee": 3970})
    assert await pending_credits(h, "tch_1") == 1000
    confirmed = await h.client.post("/v1/settlement/payments/pay_e3/confirm")
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "posted"
    assert await h.balance("tch_1", "merchant_pending") == 1000 and await pending_credits(h, "tch_1") == 0
    h.verify_ledger()
