"""Profit-sharing orders: insert once per (payment, order number), read, and compare-and-set updates."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.cashier.store.tables import profit_sharing_orders as orders

PROCESSING = "processing"


async def insert_order(conn: AsyncConnection, values: dict[str, Any]) -> Row[Any] | None:
    """Insert; None when the payment already has an order with this order number."""
    statement = (
        insert(orders).values(**values)
        .on_conflict_do_nothing(constraint="uq_profit_sharing_orders_payment_order")
        .returning(orders)
    )  # fmt: skip
    return (await conn.execute(statement)).first()


async def get_order(conn: AsyncConnection, *, payment_id: str, order_no: str) -> Row[Any] | None:
    query = select(orders).where(orders.c.payment_id == payment_id, orders.c.order_no == order_no)
    return (await conn.execute(query)).first()


async def update_processing_order(conn: AsyncConnection, order_id: str, **fields: Any) -> Row[Any] | None:
    """Record what the channel said about an order that is still processing; None once it is final."""
    statement = (
        orders.update()
        .where(orders.c.id == order_id, orders.c.status == PROCESSING)
        .values(updated_at=func.now(), **fields)
        .returning(orders)
    )
    return (await conn.execute(statement)).first()
