"""Reconciliation runs and items (SQLAlchemy Core on a given connection)."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from services.settlement.store.tables import reconciliation_items, reconciliation_runs


async def insert_run(
    conn: AsyncConnection, run_id: str, channel: str, merchant_id: str, bill_date: date, *, livemode: bool = True
) -> None:
    await conn.execute(
        insert(reconciliation_runs).values(
            run_id=run_id,
            channel=channel,
            merchant_id=merchant_id,
            bill_date=bill_date,
            status="running",
            livemode=livemode,
        )
    )


async def insert_items(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(reconciliation_items), rows)


async def finish_run(
    conn: AsyncConnection,
    run_id: str,
    *,
    status: str,
    counts: dict[str, int],
    bill_lines: int,
    error: str | None = None,
) -> None:
    await conn.execute(
        update(reconciliation_runs)
        .where(reconciliation_runs.c.run_id == run_id, reconciliation_runs.c.status == "running")
        .values(status=status, counts=counts, bill_lines=bill_lines, error=error, finished_at=func.now())
    )


async def set_resolution(conn: AsyncConnection, item_id: int, resolution_status: str) -> None:
    await conn.execute(
        update(reconciliation_items)
        .where(reconciliation_items.c.item_id == item_id)
        .values(resolution_status=resolution_status)
    )


async def get_run(conn: AsyncConnection, run_id: str) -> RowMapping | None:
    return (
        (await conn.execute(select(reconciliation_runs).where(reconciliation_runs.c.run_id == run_id)))
        .mappings()
        .first()
    )


async def list_items(
    conn: AsyncConnection,
    *,
    run_id: str | None,
    outcome: str | None,
    payment_id: str | None,
    merchant_order_no: str | None,
    after_id: int,
    limit: int,
) -> list[RowMapping]:
    query = select(reconciliation_items).where(reconciliation_items.c.item_id > after_id)
    if run_id:
        query = query.where(reconciliation_items.c.run_id == run_id)
    if outcome:
        query = query.where(reconciliation_items.c.outcome == outcome)
    if payment_id:
        query = query.where(reconciliation_items.c.payment_id == payment_id)
    if merchant_order_no:
        query = query.where(reconciliation_items.c.merchant_order_no == merchant_order_no)
    rows = await conn.execute(query.order_by(reconciliation_items.c.item_id).limit(limit))
    return list(rows.mappings())


async def runs_of_day(conn: AsyncConnection, bill_date: date) -> list[RowMapping]:
    rows = await conn.execute(
        select(reconciliation_runs)
        .where(reconciliation_runs.c.bill_date == bill_date)
        .order_by(reconciliation_runs.c.channel, reconciliation_runs.c.started_at)
    )
    return list(rows.mappings())
