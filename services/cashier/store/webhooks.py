"""Merchant webhook deliveries: a durable queue in the cashier database, ordered per payment and endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, func, select
from sqlalchemy import Sequence as DbSequence
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from services.cashier.domain.webhooks import DeliveryStatus
from services.cashier.store.tables import webhook_attempts, webhook_deliveries

DELIVERY_SEQ = DbSequence("webhook_delivery_seq")


async def insert_delivery(conn: AsyncConnection, values: dict[str, Any]) -> Row[Any]:
    statement = (
        webhook_deliveries.insert()
        .values(seq=DELIVERY_SEQ.next_value(), status=DeliveryStatus.PENDING.value, **values)
        .returning(webhook_deliveries)
    )
    return (await conn.execute(statement)).one()


async def claim_due_deliveries(
    conn: AsyncConnection, *, now: datetime, lease_until: datetime, limit: int
) -> Sequence[Row[Any]]:
    """Due deliveries that are the oldest pending one of their payment for their target (in order per payment
    and endpoint; notify_url deliveries have no endpoint and keep their own order)."""
    earlier = aliased(webhook_deliveries)
    blocked = (
        select(earlier.c.id)
        .where(
            and_(
                earlier.c.payment_id == webhook_deliveries.c.payment_id,
                earlier.c.endpoint_id.is_not_distinct_from(webhook_deliveries.c.endpoint_id),
                earlier.c.status == DeliveryStatus.PENDING.value,
                earlier.c.seq < webhook_deliveries.c.seq,
            )
        )
        .exists()
    )
    due = (
        select(webhook_deliveries.c.id)
        .where(
            webhook_deliveries.c.status == DeliveryStatus.PENDING.value,
            webhook_deliveries.c.next_attempt_at <= now,
            ~blocked,
        )
        .order_by(webhook_deliveries.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        webhook_deliveries.update()
        .where(webhook_deliveries.c.id.in_(due))
        .values(next_attempt_at=lease_until)
        .returning(webhook_deliveries)
    )
    return (await conn.execute(statement)).all()


async def record_attempt(
    conn: AsyncConnection,
    delivery_id: str,
    *,
    attempt_no: int,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    delivered: bool,
    next_attempt_at: datetime | None,
) -> None:
    """Log one try and move the delivery on: delivered, retried later, or abandoned."""
    await conn.execute(
        webhook_attempts.insert().values(
            delivery_id=delivery_id,
            attempt_no=attempt_no,
            status_code=status_code,
            error=error,
            duration_ms=duration_ms,
        )
    )
    if delivered:
        status, when = DeliveryStatus.DELIVERED, None
    elif next_attempt_at is None:
        status, when = DeliveryStatus.ABANDONED, None
    else:
        status, when = DeliveryStatus.PENDING, next_attempt_at
    await conn.execute(
        webhook_deliveries.update()
        .where(
            webhook_deliveries.c.id == delivery_id,
            webhook_deliveries.c.status == DeliveryStatus.PENDING.value,
            webhook_deliveries.c.attempt_count == attempt_no - 1,
        )
        .values(
            status=status.value,
            attempt_count=attempt_no,
            next_attempt_at=when,
            last_status_code=status_code,
            last_error=error,
            delivered_at=func.now() if delivered else None,
        )
    )


async def get_delivery(conn: AsyncConnection, *, merchant_id: str, delivery_id: str) -> Row[Any] | None:
    query = select(webhook_deliveries).where(
        webhook_deliveries.c.id == delivery_id, webhook_deliveries.c.merchant_id == merchant_id
    )
    return (await conn.execute(query)).first()


async def list_deliveries(
    conn: AsyncConnection, *, merchant_id: str, payment_id: str, limit: int, after_seq: int | None = None
) -> Sequence[Row[Any]]:
    """In delivery order; the cursor is the last `seq` of the previous page."""
    query = select(webhook_deliveries).where(
        webhook_deliveries.c.merchant_id == merchant_id, webhook_deliveries.c.payment_id == payment_id
    )
    if after_seq is not None:
        query = query.where(webhook_deliveries.c.seq > after_seq)
    return (await conn.execute(query.order_by(webhook_deliveries.c.seq).limit(limit))).all()


async def list_endpoint_deliveries(
    conn: AsyncConnection, *, merchant_id: str, endpoint_id: str, limit: int, before_seq: int | None = None
) -> Sequence[Row[Any]]:
    """An endpoint's deliveries newest first (index ix_webhook_deliveries_endpoint); the cursor is the last `seq`."""
    query = select(webhook_deliveries).where(
        webhook_deliveries.c.endpoint_id == endpoint_id, webhook_deliveries.c.merchant_id == merchant_id
    )
    if before_seq is not None:
        query = query.where(webhook_deliveries.c.seq < before_seq)
    return (await conn.execute(query.order_by(webhook_deliveries.c.seq.desc()).limit(limit))).all()


async def list_delivery_attempts(conn: AsyncConnection, delivery_id: str, *, limit: int) -> Sequence[Row[Any]]:
    """The latest `limit` tries of a delivery, oldest first (resends make the log grow without bound)."""
    query = (
        select(webhook_attempts)
        .where(webhook_attempts.c.delivery_id == delivery_id)
        .order_by(webhook_attempts.c.id.desc())
        .limit(limit)
    )
    return list(reversed((await conn.execute(query)).all()))


async def resend_delivery(
    conn: AsyncConnection, *, merchant_id: str, delivery_id: str, now: datetime
) -> Row[Any] | None:
    """Queue the delivery again from the start of the schedule (its attempt log is kept)."""
    statement = (
        webhook_deliveries.update()
        .where(webhook_deliveries.c.id == delivery_id, webhook_deliveries.c.merchant_id == merchant_id)
        .values(status=DeliveryStatus.PENDING.value, attempt_count=0, next_attempt_at=now, delivered_at=None)
        .returning(webhook_deliveries)
    )
    return (await conn.execute(statement)).first()
