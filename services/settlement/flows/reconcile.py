"""One reconciliation run: stream a channel bill from the cashier, match it against settlement's records."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

from libs.common.db import UnitOfWork
from libs.common.errors import Problem
from libs.common.ids import new_id
from libs.common.logging import get_logger
from services.settlement.config import Settings
from services.settlement.domain.reconciliation import Matcher, Outcome, Record, Resolution, Result
from services.settlement.flows.cashier import CashierClient
from services.settlement.store import reconciliation as store
from services.settlement.store import records

log = get_logger("juhe.settlement.reconciliation")


def _records(payments: list[Any], refunds: list[Any]) -> list[Record]:
    out = [
        Record("payment", p["out_trade_no"] or p["payment_id"], p["channel_trade_no"], p["payment_id"], None,
               p["merchant_order_no"], int(p["amount_minor"]), p["channel_fee_minor"], p["status"])
        for p in payments
    ]  # fmt: skip
    out.extend(
        Record("refund", r["refund_id"], r["channel_refund_no"], r["payment_id"], r["refund_id"],
               r["merchant_order_no"], int(r["amount_minor"]), None, r["status"])
        for r in refunds
    )  # fmt: skip
    return out


def _item(run_id: str, result: Result) -> dict[str, Any]:
    record, line = result.record, result.line
    return {
        "run_id": run_id, "outcome": result.outcome.value, "resolution": result.resolution.value,
        "resolution_status": "open", "kind": result.kind, "key": result.key,
        "payment_id": record.payment_id if record else None, "refund_id": record.refund_id if record else None,
        "merchant_order_no": record.merchant_order_no if record else None,
        "channel_trade_no": line.channel_trade_no if line else (record.channel_trade_no if record else None),
        "juhe_amount_minor": record.amount_minor if record else None,
        "channel_amount_minor": line.amount_minor if line else None,
        "juhe_fee_minor": record.fee_minor if record else None, "channel_fee_minor": line.fee_minor if line else None,
        "juhe_status": record.status if record else None, "channel_status": line.status if line else None,
        "detail": result.detail,
    }  # fmt: skip


async def reconcile(uow: UnitOfWork, cashier: CashierClient, settings: Settings, *, channel: str, merchant_id: str,
                    bill_date: date) -> str:  # fmt: skip
    """Run and store one reconciliation; returns the run id. Only non-matched lines are stored as items."""
    run_id = new_id("rcn")
    async with uow.begin() as tx:
        await store.insert_run(tx.conn, run_id, channel, merchant_id, bill_date)
    async with uow.read() as conn:
        payments, refunds = await records.records_of_day(conn, channel, merchant_id, bill_date)
    matcher = Matcher(_records(payments, refunds))
    counts: Counter[str] = Counter()
    pending: list[dict[str, Any]] = []
    lines = 0

    async def flush() -> None:
        async with uow.begin() as tx:
            await store.insert_items(tx.conn, pending)
        pending.clear()

    try:
        async for line in cashier.bill_lines(channel, bill_date, merchant_id):
            lines += 1
            result = matcher.match(line)
            counts[result.outcome.value] += 1
            if result.outcome is not Outcome.MATCHED:
                pending.append(_item(run_id, result))
                if len(pending) >= settings.reconciliation_insert_batch_max:
                    await flush()
        for result in matcher.leftovers():
            counts[result.outcome.value] += 1
            pending.append(_item(run_id, result))
        await flush()
    except Problem as exc:
        async with uow.begin() as tx:
            await store.finish_run(
                tx.conn, run_id, status="failed", counts=dict(counts), bill_lines=lines, error=exc.detail
            )
        raise
    await _auto_resolve(uow, cashier, run_id)
    async with uow.begin() as tx:
        await store.finish_run(tx.conn, run_id, status="finished", counts=dict(counts), bill_lines=lines)
    log.info("reconciliation finished", run_id=run_id, channel=channel, bill_date=str(bill_date), **counts)
    return run_id


async def _auto_resolve(uow: UnitOfWork, cashier: CashierClient, run_id: str) -> None:
    """A payment Juhe saw fail that the channel billed as paid: ask the cashier to re-query the channel
    (its outcome then arrives as a normal `payment.succeeded`, late_success)."""
    async with uow.read() as conn:
        items = await store.list_items(conn, run_id=run_id, outcome=Outcome.STATUS_MISMATCH.value, payment_id=None,
                                       merchant_order_no=None, after_id=0, limit=10_000)  # fmt: skip
    for item in items:
        if item["resolution"] != Resolution.CASHIER_REQUERY.value or not item["payment_id"]:
            continue
        status = await cashier.requery(item["payment_id"])
        async with uow.begin() as tx:
            await store.set_resolution(tx.conn, item["item_id"], status)
