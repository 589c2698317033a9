"""Payments and attempts: inserts, reads scoped by merchant, and compare-and-set status changes.

No function here updates a status without naming the status it expects to replace: a concurrent
change makes the UPDATE match nothing and the caller re-reads and decides again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.cashier.domain.payments import AttemptStatus, PaymentScene, PaymentStatus
from services.cashier.store.tables import attempts, payments


async def insert_payment(conn: AsyncConnection, values: dict[str, Any]) -> Row[Any] | None:
    """Insert; None when (merchant_id, merchant_order_no) already exists."""
    statement = (
        insert(payments)
        .values(**values)
        .on_conflict_do_nothing(constraint="uq_payments_merchant_order")
        .returning(payments)
    )
    return (await conn.execute(statement)).first()


async def get_payment(
    conn: AsyncConnection, *, merchant_id: str, payment_id: str, livemode: bool | None = None
) -> Row[Any] | None:
    """The merchant's payment; with `livemode`, only if it is of that mode (a test key never sees a live one)."""
    query = select(payments).where(payments.c.id == payment_id, payments.c.merchant_id == merchant_id)
    if livemode is not None:
        query = query.where(payments.c.livemode.is_(livemode))
    return (await conn.execute(query)).first()


async def get_payment_unscoped(conn: AsyncConnection, payment_id: str) -> Row[Any] | None:
    """For the worker and channel notifications, which act for whichever merchant owns the payment."""
    return (await conn.execute(select(payments).where(payments.c.id == payment_id))).first()


async def get_payment_by_order_no(
    conn: AsyncConnection, *, merchant_id: str, merchant_order_no: str
) -> Row[Any] | None:
    query = select(payments).where(
        payments.c.merchant_id == merchant_id, payments.c.merchant_order_no == merchant_order_no
    )
    return (await conn.execute(query)).first()


async def list_payments(
    conn: AsyncConnection,
    *,
    merchant_id: str,
    limit: int,
    after_id: str | None = None,
    status: str | None = None,
    channel: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    amount_from: int | None = None,
    amount_to: int | None = None,
    livemode: bool | None = None,
) -> Sequence[Row[Any]]:
    """Newest first; the cursor is the last id of the previous page (ids sort by creation time). Amount bounds are
    inclusive (minor units); `livemode` keeps one mode's payments (None: both)."""
    query = select(payments).where(payments.c.merchant_id == merchant_id)
    if livemode is not None:
        query = query.where(payments.c.livemode.is_(livemode))
    if after_id:
        query = query.where(payments.c.id < after_id)
    if status:
        query = query.where(payments.c.status == status)
    if channel:
        query = query.where(payments.c.channel == channel)
    if created_from:
        query = query.where(payments.c.created_at >= created_from)
    if created_to:
        query = query.where(payments.c.created_at < created_to)
    if amount_from is not None:
        query = query.where(payments.c.amount_minor >= amount_from)
    if amount_to is not None:
        query = query.where(payments.c.amount_minor <= amount_to)
    return (await conn.execute(query.order_by(payments.c.id.desc()).limit(limit))).all()


async def payment_aggregates(
    conn: AsyncConnection,
    *,
    merchant_id: str,
    created_from: datetime,
    created_to: datetime,
    timezone: str,
    livemode: bool | None = None,
) -> Sequence[Row[Any]]:
    """The merchant's payments created in [from, to) counted and summed in SQL by local day (in `timezone`),
    channel, status and currency: exact figures for any number of payments, without reading them. `livemode`
    keeps one mode's payments (None: both)."""
    day = func.date(func.timezone(timezone, payments.c.created_at)).label("day")
    query = (
        select(
            day,
            payments.c.channel,
            payments.c.status,
            payments.c.currency,
            func.count().label("count"),
            func.coalesce(func.sum(payments.c.amount_minor), 0).label("amount_minor"),
            func.coalesce(func.sum(payments.c.refunded_minor), 0).label("refunded_minor"),
            func.coalesce(func.sum(payments.c.fee_minor), 0).label("fee_minor"),
            func.coalesce(func.sum(payments.c.platform_fee_minor), 0).label("platform_fee_minor"),
        )
        .where(
            payments.c.merchant_id == merchant_id,
            payments.c.created_at >= created_from,
            payments.c.created_at < created_to,
            *([payments.c.livemode.is_(livemode)] if livemode is not None else []),
        )
        .group_by(day, payments.c.channel, payments.c.status, payments.c.currency)
        .order_by(day, payments.c.channel, payments.c.status, payments.c.currency)
    )
    return (await conn.execute(query)).all()


async def cas_payment(
    conn: AsyncConnection, payment_id: str, *, old: PaymentStatus, new: PaymentStatus, **fields: Any
) -> Row[Any] | None:
    """Move the payment from `old` to `new` (plus the named fields); None if it was not in `old`."""
    statement = (
        payments.update()
        .where(payments.c.id == payment_id, payments.c.status == old.value)
        .values(status=new.value, updated_at=func.now(), **fields)
        .returning(payments)
    )
    return (await conn.execute(statement)).first()


async def set_payment_attempt(
    conn: AsyncConnection, payment_id: str, *, status: PaymentStatus, **fields: Any
) -> Row[Any] | None:
    """Point the payment at its current attempt without changing status (guarded on the status read)."""
    statement = (
        payments.update()
        .where(payments.c.id == payment_id, payments.c.status == status.value)
        .values(updated_at=func.now(), **fields)
        .returning(payments)
    )
    return (await conn.execute(statement)).first()


async def insert_attempt(conn: AsyncConnection, values: dict[str, Any]) -> Row[Any]:
    return (await conn.execute(insert(attempts).values(**values).returning(attempts))).one()


async def list_attempts(conn: AsyncConnection, payment_id: str) -> Sequence[Row[Any]]:
    query = select(attempts).where(attempts.c.payment_id == payment_id).order_by(attempts.c.seq)
    return (await conn.execute(query)).all()


async def list_attempts_of(conn: AsyncConnection, payment_ids: Sequence[str]) -> dict[str, list[Row[Any]]]:
    """The attempts of a page of payments in one query (a list shows each payment's attempts, as a read does)."""
    found: dict[str, list[Row[Any]]] = {payment_id: [] for payment_id in payment_ids}
    if payment_ids:
        query = select(attempts).where(attempts.c.payment_id.in_(payment_ids)).order_by(attempts.c.seq)
        for row in (await conn.execute(query)).all():
            found[row.payment_id].append(row)
    return found


async def get_attempt(conn: AsyncConnection, attempt_id: str) -> Row[Any] | None:
    return (await conn.execute(select(attempts).where(attempts.c.id == attempt_id))).first()


async def get_attempt_by_out_trade_no(
    conn: AsyncConnection, *, merchant_id: str, channel: str, out_trade_no: str
) -> Row[Any] | None:
    query = select(attempts).where(
        attempts.c.out_trade_no == out_trade_no,
        attempts.c.merchant_id == merchant_id,
        attempts.c.channel == channel,
    )
    return (await conn.execute(query)).first()


async def cas_attempt(
    conn: AsyncConnection, attempt_id: str, *, old: AttemptStatus, new: AttemptStatus, **fields: Any
) -> Row[Any] | None:
    statement = (
        attempts.update()
        .where(attempts.c.id == attempt_id, attempts.c.status == old.value)
        .values(status=new.value, updated_at=func.now(), **fields)
        .returning(attempts)
    )
    return (await conn.execute(statement)).first()


async def claim_attempts_to_poll(
    conn: AsyncConnection, *, now: datetime, lease_until: datetime, limit: int
) -> Sequence[Row[Any]]:
    """Processing attempts whose next query is due, leased so another replica skips them meanwhile; each with its
    payment's `livemode` (the query must use the config of the payment's mode: a merchant may hold both)."""
    due = (
        select(attempts.c.id)
        .where(attempts.c.status == AttemptStatus.PROCESSING.value, attempts.c.next_poll_at <= now)
        .order_by(attempts.c.next_poll_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        attempts.update()
        .where(attempts.c.id.in_(due), payments.c.id == attempts.c.payment_id)
        .values(next_poll_at=lease_until)
        .returning(*attempts.c, payments.c.livemode)
    )
    return (await conn.execute(statement)).all()


def _redrive_due(now: datetime, grace_before: datetime) -> Any:
    """A `created` attempt whose driver's lease (next_poll_at) has passed. Attempts written before leases
    existed (next_poll_at NULL) count from their creation plus the grace."""
    return and_(
        attempts.c.status == AttemptStatus.CREATED.value,
        or_(
            attempts.c.next_poll_at <= now,
            and_(attempts.c.next_poll_at.is_(None), attempts.c.created_at <= grace_before),
        ),
    )


async def claim_attempts_to_redrive(
    conn: AsyncConnection, *, now: datetime, grace_before: datetime, lease_until: datetime, limit: int
) -> Sequence[Row[Any]]:
    """`created` attempts nobody is driving any more (the prepay never ran, or its result was never
    written), leased to this caller until `lease_until` so a retrying client or another replica waits."""
    due = (
        select(attempts.c.id)
        .where(_redrive_due(now, grace_before))
        .order_by(attempts.c.next_poll_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        attempts.update()
        .where(attempts.c.id.in_(due), attempts.c.status == AttemptStatus.CREATED.value)
        .values(next_poll_at=lease_until, updated_at=func.now())
        .returning(attempts)
    )
    return (await conn.execute(statement)).all()


async def claim_attempt_to_redrive(
    conn: AsyncConnection, attempt_id: str, *, now: datetime, grace_before: datetime, lease_until: datetime
) -> Row[Any] | None:
    """The same lease for one attempt (a client retrying its create); None while someone else holds it."""
    statement = (
        attempts.update()
        .where(attempts.c.id == attempt_id, _redrive_due(now, grace_before))
        .values(next_poll_at=lease_until, updated_at=func.now())
        .returning(attempts)
    )
    return (await conn.execute(statement)).first()


async def schedule_attempt_poll(
    conn: AsyncConnection, attempt_id: str, *, poll_count: int, next_poll_at: datetime | None
) -> None:
    await conn.execute(
        attempts.update()
        .where(attempts.c.id == attempt_id, attempts.c.status == AttemptStatus.PROCESSING.value)
        .values(poll_count=poll_count, next_poll_at=next_poll_at, updated_at=func.now())
    )


async def list_expired_payments(conn: AsyncConnection, *, now: datetime, limit: int) -> Sequence[Row[Any]]:
    query = (
        select(payments)
        .where(
            payments.c.status.in_([PaymentStatus.CREATED.value, PaymentStatus.PROCESSING.value]),
            payments.c.expire_at <= now,
            # A payment code is reversed by its attempt's poller at the deadline, never closed from here.
            payments.c.scene != PaymentScene.PAYMENT_CODE.value,
        )
        .order_by(payments.c.expire_at)
        .limit(limit)
    )
    return (await conn.execute(query)).all()


async def advance_deadline(conn: AsyncConnection, payment_id: str, *, now: datetime) -> bool:
    """Bring an open payment's expiry forward to `now` (a merchant cancelling a payment code at the counter:
    its poller reverses it at the next scheduled query)."""
    result = await conn.execute(
        payments.update()
        .where(
            payments.c.id == payment_id,
            payments.c.status.in_([PaymentStatus.CREATED.value, PaymentStatus.PROCESSING.value]),
            payments.c.expire_at > now,
        )
        .values(expire_at=now, updated_at=func.now())
    )
    return bool(result.rowcount)
