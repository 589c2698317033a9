"""Refunds stored but never applied while their payment is succeeded — what migration 0008 leaves of the
refunds the old consumer dropped because they overtook their payment — are applied once by the worker."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert, select

from services.settlement.flows.payments import apply_parked_refunds
from services.settlement.store.tables import payment_records, refund_records, settlement_entries
from services.settlement.tests.integration.conftest import Harness, payment_event, refund_event


async def test_a_parked_refund_is_applied_once(settlement_only: Harness) -> None:
    h = settlement_only
    await h.deliver(payment_event("pay_old", amount_minor=10_000, fee_minor=25))
    await h.deliver(refund_event("re_new", "pay_old", 1000))  # applied at once: its payment is known
    now = datetime.now(UTC)
    async with h.runtime.uow.begin() as tx:  # stored by the old consumer, never applied
        await tx.conn.execute(
            insert(refund_records).values(
                refund_id="re_old",
                payment_id="pay_old",
                merchant_id="mch_1",
                channel="wechatpay",
                status="succeeded",
                amount_minor=4000,
                currency="CNY",
                bill_date=now.date(),
                succeeded_at=now,
            )
        )
    assert await apply_parked_refunds(h.runtime.uow, 100) == 1
    assert await apply_parked_refunds(h.runtime.uow, 100) == 0  # once
    async with h.runtime.uow.read() as conn:
        refunds = dict(
            (
                await conn.execute(
                    select(settlement_entries.c.refund_id, settlement_entries.c.amount_minor).where(
                        settlement_entries.c.kind == "refund"
                    )
                )
            ).all()
        )
        refunded = await conn.scalar(
            select(payment_records.c.refunded_minor).where(payment_records.c.payment_id == "pay_old")
        )
    assert refunds == {"re_new": -1000, "re_old": -4000} and refunded == 5000
