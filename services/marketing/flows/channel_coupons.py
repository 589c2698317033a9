"""Coupons of channel stocks: sent to the user at the channel, and the channel's callbacks applied to them.

**Sending.** A user claims a channel stock's coupon with its id at that channel (`channel_user`: the openid under
the merchant's WeChat appid, or the Alipay user id). The claim is the ordinary one (flows/claims.py: budget and
limits exact in marketing, idempotent by request id); in the same transaction it records the send as `pending`
with `out_request_no` = the coupon id. After the commit the cashier sends it at the channel; the answer (the
channel's coupon id) is stored with a compare-and-set from `pending`. The channel is idempotent by that number,
so a send whose answer was lost (timeout, crash) is simply made again by the worker (`send_round`); a channel
refusal ends it `refused` and the coupon `voided` (its budget stays taken: budgets here are conservative).

**Callbacks** (WeChat `COUPON.USE`, Alipay `alipay.marketing.activity.message.received | used | expired | …`)
arrive verified from the cashier. Each is stored once by its channel id (a replay finds it and changes nothing),
then applied to its coupon if that is known — or later, when the send's answer is stored (a callback can come
before our own record of the send). Applying: `used` makes the coupon `used` from `available` or `expired` (the
channel's word on a use wins), `expired` makes an `available` one `expired`; so any order ends the same.
A channel coupon is used at the channel, never locked by Juhe's cashier: its discount and funders come with the
payment (`channel_discount`, posted by the ledger).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx, UnitOfWork
from libs.common.errors import Problem
from libs.common.logging import get_logger
from services.marketing.clients.cashier import CashierClient
from services.marketing.domain.errors import CHANNEL_REFUSED, STOCK_NOT_RUNNING
from services.marketing.store.tables import channel_coupon_events, channel_coupons, channel_stocks, coupons

log = get_logger("juhe.marketing.channel_coupons")


async def record_send(tx: Tx, stock: RowMapping, coupon: RowMapping, channel_user: str | None) -> None:
    """In the claim's transaction: the coupon is to be sent to `channel_user` at the stock's channel."""
    assert channel_user, "claims.claim refuses a channel stock's claim without it first"
    mirrored = (
        await tx.conn.execute(
            select(channel_stocks.c.channel_stock_id).where(channel_stocks.c.stock_id == stock["stock_id"])
        )
    ).scalar()
    if mirrored is None:
        raise Problem(STOCK_NOT_RUNNING, "the stock is not created at its channel yet", status=stock["status"])
    await tx.conn.execute(
        insert(channel_coupons).values(
            coupon_id=coupon["coupon_id"],
            stock_id=stock["stock_id"],
            program=stock["channel"],
            channel_user=channel_user,
            out_request_no=coupon["coupon_id"],
            send_status="pending",
        )
    )


async def get(conn: AsyncConnection, coupon_id: str) -> RowMapping | None:
    query = select(channel_coupons).where(channel_coupons.c.coupon_id == coupon_id)
    return (await conn.execute(query)).mappings().first()


def view(row: RowMapping | None) -> dict[str, Any] | None:
    """The coupon's channel part in API answers (None for Juhe's own coupons)."""
    if row is None:
        return None
    return {
        "program": row["program"],
        "channel_user": row["channel_user"],
        "send_status": row["send_status"],
        "channel_coupon_id": row["channel_coupon_id"],
        "failure_code": row["failure_code"],
        "used_at": row["used_at"],
        "transaction_id": row["transaction_id"],
    }


async def send(uow: UnitOfWork, cashier: CashierClient, coupon_id: str) -> RowMapping | None:
    """Send a pending coupon at its channel (idempotent there); the row as it is after. An outage leaves it
    pending for the worker (the Problem is swallowed here: the claim itself succeeded)."""
    async with uow.read() as conn:
        row = (
            (
                await conn.execute(
                    select(channel_coupons, channel_stocks.c.merchant_id, channel_stocks.c.channel_stock_id)
                    .join(channel_stocks, channel_stocks.c.stock_id == channel_coupons.c.stock_id)
                    .where(channel_coupons.c.coupon_id == coupon_id)
                )
            )
            .mappings()
            .first()
        )
    if row is None or row["send_status"] != "pending":
        return row
    c = channel_coupons.c
    try:
        channel_coupon_id = await cashier.send_coupon(
            program=row["program"],
            merchant_id=row["merchant_id"],
            channel_stock_id=row["channel_stock_id"],
            user=row["channel_user"],
            out_request_no=row["out_request_no"],
        )
    except Problem as refused:
        if refused.spec is not CHANNEL_REFUSED:
            log.warning("channel coupon send left pending", coupon_id=coupon_id, error=str(refused))
            async with uow.read() as conn:
                return await get(conn, coupon_id)
        async with uow.begin() as tx:
            await tx.conn.execute(
                update(channel_coupons)
                .where(c.coupon_id == coupon_id, c.send_status == "pending")
                .values(
                    send_status="refused",
                    updated_at=func.now(),
                    failure_code=str(refused.extensions.get("channel_code") or "refused"),
                )
            )
            await tx.conn.execute(
                update(coupons)
                .where(coupons.c.coupon_id == coupon_id, coupons.c.status == "available")
                .values(status="voided", updated_at=func.now())
            )
            return await get(tx.conn, coupon_id)
    async with uow.begin() as tx:
        await tx.conn.execute(
            update(channel_coupons)
            .where(c.coupon_id == coupon_id, c.send_status == "pending")
            .values(send_status="sent", channel_coupon_id=channel_coupon_id, updated_at=func.now())
        )
        await apply_events(tx, row["program"], channel_coupon_id)
        return await get(tx.conn, coupon_id)


async def send_round(uow: UnitOfWork, cashier: CashierClient, *, batch_max: int, older_than: datetime) -> int:
    """Send again the coupons still pending since before `older_than` (answers lost to an outage or a crash)."""
    async with uow.read() as conn:
        due = (
            (
                await conn.execute(
                    select(channel_coupons.c.coupon_id)
                    .where(channel_coupons.c.send_status == "pending", channel_coupons.c.created_at < older_than)
                    .order_by(channel_coupons.c.created_at)
                    .limit(batch_max)
                )
            )
            .scalars()
            .all()
        )
    for coupon_id in due:
        await send(uow, cashier, coupon_id)
    return len(due)


async def record_event(tx: Tx, event: dict[str, Any]) -> bool:
    """Store a verified channel callback once and apply what can be applied; False for a replay."""
    stored = await tx.conn.execute(
        insert(channel_coupon_events)
        .values(
            program=event["program"],
            event_id=event["event_id"],
            kind=event["kind"],
            channel_stock_id=event["channel_stock_id"],
            channel_coupon_id=event.get("channel_coupon_id"),
            occurred_at=event.get("occurred_at"),
            transaction_id=event.get("transaction_id"),
            detail=event.get("detail") or {},
        )
        .on_conflict_do_nothing()
        .returning(channel_coupon_events.c.event_id)
    )
    if stored.first() is None:
        return False
    if event.get("channel_coupon_id"):
        await apply_events(tx, event["program"], event["channel_coupon_id"])
    else:  # about the stock as a whole (created, stopped, appended …): kept for the record
        e = channel_coupon_events.c
        await tx.conn.execute(
            update(channel_coupon_events)
            .where(e.program == event["program"], e.event_id == event["event_id"])
            .values(applied_at=func.now())
        )
    return True


async def apply_events(tx: Tx, program: str, channel_coupon_id: str) -> None:
    """Apply the stored, unapplied callbacks of one channel coupon (under its row lock), if we know the coupon."""
    c, e = channel_coupons.c, channel_coupon_events.c
    mirrored = (
        (
            await tx.conn.execute(
                select(channel_coupons)
                .where(c.program == program, c.channel_coupon_id == channel_coupon_id)
                .with_for_update()
            )
        )
        .mappings()
        .first()
    )
    if mirrored is None:
        return
    pending = and_(e.program == program, e.channel_coupon_id == channel_coupon_id, e.applied_at.is_(None))
    events = (
        (await tx.conn.execute(select(channel_coupon_events).where(pending).order_by(e.received_at))).mappings().all()
    )
    for event in events:
        if event["kind"] == "used":
            await tx.conn.execute(
                update(coupons)
                .where(coupons.c.coupon_id == mirrored["coupon_id"], coupons.c.status.in_(("available", "expired")))
                .values(status="used", updated_at=func.now())
            )
            await tx.conn.execute(
                update(channel_coupons)
                .where(c.coupon_id == mirrored["coupon_id"])
                .values(
                    used_at=func.coalesce(c.used_at, event["occurred_at"], func.now()),
                    transaction_id=func.coalesce(c.transaction_id, event["transaction_id"]),
                    updated_at=func.now(),
                )
            )
        elif event["kind"] == "expired":
            await tx.conn.execute(
                update(coupons)
                .where(coupons.c.coupon_id == mirrored["coupon_id"], coupons.c.status == "available")
                .values(status="expired", updated_at=func.now())
            )
    await tx.conn.execute(update(channel_coupon_events).where(pending).values(applied_at=func.now()))
