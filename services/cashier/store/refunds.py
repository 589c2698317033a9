"""Refunds and the payment's refund reservation, both changed only by compare-and-set.

Reads return typed records (domain/records.py, built by store/codec.py); a refund's status changes only
through `mark_refund_succeeded` / `mark_refund_failed`, each a compare-and-set on the status the record
was read with, checked against the state machine of domain/refunds.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.cashier.domain.payments import PaymentStatus
from services.cashier.domain.records import PaymentRecord, RefundRecord
from services.cashier.domain.refunds import RefundStatus, can_move_refund
from services.cashier.store.codec import payment_from_row, payment_or_none, refund_from_row, refund_or_none
from services.cashier.store.tables import payments, refunds


async def reserve_refund(conn: AsyncConnection, payment_id: str, *, refund_minor: int) -> PaymentRecord | None:
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
    return payment_or_none((await conn.execute(statement)).first())


async def release_refund(conn: AsyncConnection, payment_id: str, *, refund_minor: int) -> None:
    await conn.execute(
        payments.update()
        .where(payments.c.id == payment_id)
        .values(refund_reserved_minor=payments.c.refund_reserved_minor - refund_minor, updated_at=func.now())
    )


async def add_refunded(conn: AsyncConnection, payment_id: str, *, refund_minor: int) -> PaymentRecord:
    statement = (
        payments.update()
        .where(payments.c.id == payment_id)
        .values(refunded_minor=payments.c.refunded_minor + refund_minor, updated_at=func.now())
        .returning(payments)
    )
    return payment_from_row((await conn.execute(statement)).one())


async def insert_refund(conn: AsyncConnection, values: dict[str, Any]) -> RefundRecord | None:
    """Insert; None when the merchant refund number or the request key is already used."""
    statement = insert(refunds).values(**values).on_conflict_do_nothing().returning(refunds)
    return refund_or_none((await conn.execute(statement)).first())


async def get_refund(conn: AsyncConnection, *, merchant_id: str, refund_id: str) -> RefundRecord | None:
    query = select(refunds).where(refunds.c.id == refund_id, refunds.c.merchant_id == merchant_id)
    return refund_or_none((await conn.execute(query)).first())


async def get_refund_unscoped(conn: AsyncConnection, refund_id: str) -> RefundRecord | None:
    return refund_or_none((await conn.execute(select(refunds).where(refunds.c.id == refund_id))).first())


async def get_refund_by_merchant_no(
    conn: AsyncConnection, *, merchant_id: str, merchant_refund_no: str
) -> RefundRecord | None:
    query = select(refunds).where(
        refunds.c.merchant_id == merchant_id, refunds.c.merchant_refund_no == merchant_refund_no
    )
    return refund_or_none((await conn.execute(query)).first())


async def get_refund_by_request_key(
    conn: AsyncConnection, *, merchant_id: str, request_key: str
) -> RefundRecord | None:
    query = select(refunds).where(refunds.c.merchant_id == merchant_id, refunds.c.request_key == request_key)
    return refund_or_none((await conn.execute(query)).first())


async def list_refunds(
    conn: AsyncConnection, *, merchant_id: str, payment_id: str, limit: int, after_id: str | None = None
) -> list[RefundRecord]:
    """Oldest first (ids sort by creation time); the cursor is the last id of the previous page."""
    query = select(refunds).where(refunds.c.payment_id == payment_id, refunds.c.merchant_id == merchant_id)
    if after_id:
        query = query.where(refunds.c.id > after_id)
    return [refund_from_row(row) for row in await conn.execute(query.order_by(refunds.c.id).limit(limit))]


async def _move_refund(
    conn: AsyncConnection, refund: RefundRecord, *, new: RefundStatus, values: dict[str, Any]
) -> RefundRecord | None:
    """The one compare-and-set under both refund transitions: from the status `refund` was read with."""
    if not can_move_refund(refund.status, new):
        raise ValueError(f"a refund cannot move from {refund.status} to {new}")
    statement = (
        refunds.update()
        .where(refunds.c.id == refund.id, refunds.c.status == refund.status.value)
        .values(status=new.value, updated_at=func.now(), next_poll_at=None, **values)
        .returning(refunds)
    )
    return refund_or_none((await conn.execute(statement)).first())


async def mark_refund_succeeded(
    conn: AsyncConnection,
    refund: RefundRecord,
    *,
    succeeded_at: datetime,
    channel_refund_no: str | None,
    wallet_split: dict[str, int] | None,
) -> RefundRecord | None:
    """`pending → succeeded`: the money went back. `channel_refund_no` and `wallet_split` (where a wallet refund
    went back) are written only when given. None when another writer finished the refund first."""
    values: dict[str, Any] = {"succeeded_at": succeeded_at}
    if channel_refund_no:
        values["channel_refund_no"] = channel_refund_no
    if wallet_split is not None:
        values["wallet_split"] = wallet_split
    return await _move_refund(conn, refund, new=RefundStatus.SUCCEEDED, values=values)


async def mark_refund_failed(
    conn: AsyncConnection,
    refund: RefundRecord,
    *,
    failure_code: str,
    failure_message: str | None,
    channel_refund_no: str | None,
) -> RefundRecord | None:
    """`pending → failed`: the channel refused or failed the refund (its reservation is released by the caller,
    in the same transaction). None when another writer finished the refund first."""
    values: dict[str, Any] = {"failure_code": failure_code, "failure_message": failure_message}
    if channel_refund_no:
        values["channel_refund_no"] = channel_refund_no
    return await _move_refund(conn, refund, new=RefundStatus.FAILED, values=values)


async def claim_refunds_to_poll(
    conn: AsyncConnection, *, now: datetime, lease_until: datetime, limit: int
) -> list[RefundRecord]:
    due = (
        select(refunds.c.id)
        .where(refunds.c.status == RefundStatus.PENDING.value, refunds.c.next_poll_at <= now)
        .order_by(refunds.c.next_poll_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = refunds.update().where(refunds.c.id.in_(due)).values(next_poll_at=lease_until).returning(refunds)
    return [refund_from_row(row) for row in await conn.execute(statement)]


async def schedule_refund_poll(
    conn: AsyncConnection, refund_id: str, *, poll_count: int, next_poll_at: datetime | None
) -> None:
    await conn.execute(
        refunds.update()
        .where(refunds.c.id == refund_id, refunds.c.status == RefundStatus.PENDING.value)
        .values(poll_count=poll_count, next_poll_at=next_poll_at, updated_at=func.now())
    )
