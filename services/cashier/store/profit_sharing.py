"""Profit-sharing orders: insert once per (payment, order number), read, and named compare-and-set changes.

Reads return `ShareOrderRecord`s (domain/records.py, built by store/codec.py). An order changes only while it is
`processing`, through `record_share_answer` (what the channel said) or `mark_share_refused` (the channel refused
the order itself); once final, both match nothing and return None.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.cashier.domain.profit_sharing import ShareStatus
from services.cashier.domain.records import ShareOrderRecord
from services.cashier.store.codec import share_order_or_none
from services.cashier.store.tables import profit_sharing_orders as orders


async def insert_order(conn: AsyncConnection, values: dict[str, Any]) -> ShareOrderRecord | None:
    """Insert; None when the payment already has an order with this order number."""
    statement = (
        insert(orders)
        .values(**values)
        .on_conflict_do_nothing(constraint="uq_profit_sharing_orders_payment_order")
        .returning(orders)
    )
    return share_order_or_none((await conn.execute(statement)).first())


async def get_order(conn: AsyncConnection, *, payment_id: str, order_no: str) -> ShareOrderRecord | None:
    query = select(orders).where(orders.c.payment_id == payment_id, orders.c.order_no == order_no)
    return share_order_or_none((await conn.execute(query)).first())


async def _change_processing_order(
    conn: AsyncConnection, order: ShareOrderRecord, values: dict[str, Any]
) -> ShareOrderRecord | None:
    """The compare-and-set under both changes: only a `processing` order moves; None once it is final."""
    statement = (
        orders.update()
        .where(orders.c.id == order.id, orders.c.status == ShareStatus.PROCESSING.value)
        .values(updated_at=func.now(), **values)
        .returning(orders)
    )
    return share_order_or_none((await conn.execute(statement)).first())


async def record_share_answer(
    conn: AsyncConnection,
    order: ShareOrderRecord,
    *,
    status: ShareStatus,
    receivers: list[dict[str, Any]],
    submitted_at: datetime | None,
    channel_order_id: str | None,
) -> ShareOrderRecord | None:
    """`processing → status` (still `processing` while the channel is not final) with each receiver's line as the
    channel reported it. `submitted_at` (the channel accepted the order) and `channel_order_id` are written only
    when given."""
    values: dict[str, Any] = {"receivers": receivers, "status": status.value}
    if submitted_at is not None:
        values["submitted_at"] = submitted_at
    if channel_order_id:
        values["channel_order_id"] = channel_order_id
    return await _change_processing_order(conn, order, values)


async def mark_share_refused(
    conn: AsyncConnection,
    order: ShareOrderRecord,
    *,
    receivers: list[dict[str, Any]],
    failure_code: str,
    failure_message: str,
) -> ShareOrderRecord | None:
    """`processing → failed`: the channel refused the order itself (over the ratio, trade not frozen…); nothing
    moved, every receiver's line is failed with the refusal's code."""
    values = {
        "status": ShareStatus.FAILED.value,
        "receivers": receivers,
        "failure_code": failure_code,
        "failure_message": failure_message,
    }
    return await _change_processing_order(conn, order, values)
