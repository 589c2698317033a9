"""Refunds and the payment's refund reservation, both changed only by compare-and-set."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.cashier.domain.payments import PaymentStatus
from services.cashier.domain.refunds import RefundStatus
from services.cashier.store.tables import payments, refunds


async def reserve_refund(conn: AsyncConnection, payment_id: str, *, refund_minor: int) -> Row[Any] | None:
    """Atomically take `refund_minor` from what remains refundable; None if it does not fit.

    One UPDATE whose WHERE re-checks the remainder: concurrent refunds serialise on the row lock and
    each sees the reservation of the ones before it, so they can never add up to more than the payment.
    """
    statement = (
        payments.update()
        .where(
            payments.c.id == payment_id,
            payments.c.status == PaymentStatus.SUCCEEDED.value,
            payments.c.amount_minor - payments.c.refund_reserved_minor >= refund_minor,
        )
        .values(refund_reserved_minor=payments.c.refund_reserved_minor + refund_minor, updated_at=func.now())
        .returning(payments)
    )
    return (await conn.execute(statement)).first()


async def release_refund(conn: AsyncConnection, payment_id: str, *, refund_minor: int) -> None:
    await conn.execute(
        payments.update()
        .where(payments.c.id == payment_id)
        .values(refund_reserved_minor=payments.c.refund_reserved_minor - refund_minor, updated_at=func.now())
    )


async def add_refunded(conn: AsyncConnection, payment_id: str, *, refund_minor: int) -> Row[Any]:
    statement = (
        payments.update()
        .where(payments.c.id == payment_id)
        .values(refunded_minor=payments.c.refunded_minor + refund_minor, updated_at=func.now())
        .returning(payments)
    )
    return (await conn.execute(statement)).one()


async def insert_refund(conn: AsyncConnection, values: dict[str, Any]) -> Row[Any] | None:
    """Insert; None when the merchant refund number or the request key is already used."""
    statement = insert(refunds).values(**values).on_conflict_do_nothing().returning(refunds)
    return (await conn.execute(statement)).first()


async def get_refund(conn: AsyncConnection, *, merchant_id: str, refund_id: str) -> Row[Any] | None:
    query = select(refunds).where(refunds.c.id == refund_id, refunds.c.merchant_id == merchant_id)
    return (await conn.execute(query)).first()


async def get_refund_unscoped(conn: AsyncConnection, refund_id: str) -> Row[Any] | None:
    return (await conn.execute(select(refunds).where(refunds.c.id == refund_id))).first()


async def get_refund_by_merchant_no(
    conn: AsyncConnection, *, merchant_id: str, merchant_refund_no: str
) -> Row[Any] | None:
    query = select(refunds).where(
        refunds.c.merchant_id == merchant_id, refunds.c.merchant_refund_no == merchant_refund_no
    )
    return (await conn.execute(query)).first()


async def get_refund_by_request_key(conn: AsyncConnection, *, merchant_id: str, request_key: str) -> Row[Any] | None:
    query = select(refunds).where(refunds.c.merchant_id == merchant_id, refunds.c.request_key == request_key)
    return (await conn.execute(query)).first()


async def list_refunds(
    conn: AsyncConnection, *, merchant_id: str, payment_id: str, limit: int, after_id: str | None = None
) -> Sequence[Row[Any]]:
    """Oldest first (ids sort by creation time); the cursor is the last id of the previous page."""
    query = select(refunds).where(refunds.c.payment_id == payment_id, refunds.c.merchant_id == merchant_id)
    if after_id:
        query = query.where(refunds.c.id > after_id)
    return (await conn.execute(query.order_by(refunds.c.id).limit(limit))).all()


async def cas_refund(
    conn: AsyncConnection, refund_id: str, *, old: RefundStatus, new: RefundStatus, **fields: Any
) -> Row[Any] | None:
    statement = (
        refunds.update()
        .where(refunds.c.id == refund_id, refunds.c.status == old.value)
        .values(status=new.value, updated_at=func.now(), **fields)
        .returning(refunds)
    )
    return (await conn.execute(statement)).first()


async def claim_refunds_to_poll(
    conn: AsyncConnection, *, now: datetime, lease_until: datetime, limit: int
) -> Sequence[Row[Any]]:
    due = (
        select(refunds.c.id)
        .where(refunds.c.status == RefundStatus.PENDING.value, refunds.c.next_poll_at <= now)
        .order_by(refunds.c.next_poll_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = refunds.update().where(refunds.c.id.in_(due)).values(next_poll_at=lease_until).returning(refunds)
    return (await conn.execute(statement)).all()


async def schedule_refund_poll(
    conn: AsyncConnection, refund_id: str, *, poll_count: int, next_poll_at: datetime | None
) -> None:
    await conn.execute(
        refunds.update()
        .where(refunds.c.id == refund_id, refunds.c.status == RefundStatus.PENDING.value)
        .values(poll_count=poll_count, next_poll_at=next_poll_at, updated_at=func.now())
    )
