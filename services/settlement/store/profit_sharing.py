"""Channel profit-sharing orders (SQLAlchemy Core on a given connection). Status changes are compare-and-set."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from services.settlement.store.tables import profit_sharing_orders as orders
from services.settlement.store.work_queue import WorkQueue

queue = WorkQueue(orders, orders.c.order_no)


async def insert_order(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    """One order per final split (unique split_id): a repeat is a no-op."""
    result = await conn.execute(
        insert(orders).values(**values).on_conflict_do_nothing(constraint="profit_sharing_orders_split")
    )
    return bool(result.rowcount)


async def get(conn: AsyncConnection, order_no: str) -> RowMapping | None:
    return (await conn.execute(select(orders).where(orders.c.order_no == order_no))).mappings().first()


async def of_payment(conn: AsyncConnection, payment_id: str) -> list[RowMapping]:
    rows = await conn.execute(select(orders).where(orders.c.payment_id == payment_id).order_by(orders.c.order_no))
    return list(rows.mappings())


async def seen(
    conn: AsyncConnection,
    order_no: str,
    *,
    channel_status: str,
    channel_order_id: str | None,
    result: dict[str, Any],
    next_attempt_at: datetime,
) -> None:
    """The channel is still working on it: remember what it said, ask again later."""
    await conn.execute(
        update(orders)
        .where(orders.c.order_no == order_no, orders.c.status == "pending")
        .values(
            channel_status=channel_status,
            channel_order_id=channel_order_id,
            result=result,
            next_attempt_at=next_attempt_at,
            last_error=None,
        )
    )


async def finish(
    conn: AsyncConnection,
    order_no: str,
    *,
    status: str,
    channel_status: str | None,
    channel_order_id: str | None,
    result: dict[str, Any] | None,
    ledger_transfer_id: str | None,
    error: str | None,
    now: datetime,
) -> bool:
    """pending → succeeded | failed, once."""
    done = await conn.execute(
        update(orders)
        .where(orders.c.order_no == order_no, orders.c.status == "pending")
        .values(
            status=status,
            channel_status=channel_status,
            channel_order_id=channel_order_id,
            result=result,
            ledger_transfer_id=ledger_transfer_id,
            last_error=error,
            finished_at=now,
        )
    )
    return bool(done.rowcount)
