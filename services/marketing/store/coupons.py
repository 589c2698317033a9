"""Coupon, redemption and refund rows. Every status change is a compare-and-set on the old status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from services.marketing.store.tables import coupons, redemption_refunds, redemptions


async def insert_coupon(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping | None:
    """The new coupon, or None when this user already used this request id (the caller replays). The unique
    key makes a concurrent duplicate wait for the first transaction, then see the conflict."""
    statement = (
        insert(coupons)
        .values(**values)
        .on_conflict_do_nothing(constraint="coupons_user_request_key")
        .returning(coupons)
    )
    return (await conn.execute(statement)).mappings().first()


async def coupon_by_request(conn: AsyncConnection, user_id: str, request_id: str) -> RowMapping | None:
    query = select(coupons).where(coupons.c.user_id == user_id, coupons.c.request_id == request_id)
    return (await conn.execute(query)).mappings().first()


async def get_coupon(conn: AsyncConnection, coupon_id: str, *, for_update: bool = False) -> RowMapping | None:
    query = select(coupons).where(coupons.c.coupon_id == coupon_id)
    return (await conn.execute(query.with_for_update() if for_update else query)).mappings().first()


async def coupon_by_code(conn: AsyncConnection, code: str) -> RowMapping | None:
    return (await conn.execute(select(coupons).where(coupons.c.code == code))).mappings().first()


async def list_user_coupons(
    conn: AsyncConnection, user_id: str, *, status: str | None, before_id: str | None, limit: int
) -> list[RowMapping]:
    query = select(coupons).where(coupons.c.user_id == user_id).order_by(coupons.c.coupon_id.desc()).limit(limit)
    if status is not None:
        query = query.where(coupons.c.status == status)
    if before_id:
        query = query.where(coupons.c.coupon_id < before_id)
    return list((await conn.execute(query)).mappings())


async def available_coupons(conn: AsyncConnection, user_id: str, now: datetime, *, limit: int) -> list[RowMapping]:
    """The user's coupons usable now (available, inside their window), soonest to expire first."""
    c = coupons.c
    query = (
        select(coupons)
        .where(c.user_id == user_id, c.status == "available", c.valid_from <= now, c.valid_until > now)
        .order_by(c.valid_until, c.coupon_id)
        .limit(limit)
    )
    return list((await conn.execute(query)).mappings())


async def move_coupon(
    conn: AsyncConnection,
    coupon_id: str,
    old: str,
    new: str,
    *,
    redemption_id: str | None,
    expect_redemption: str | None = None,
) -> RowMapping | None:
    """CAS of a coupon's status (and, when given, of the redemption holding it). None: someone else won."""
    where = [coupons.c.coupon_id == coupon_id, coupons.c.status == old]
    if expect_redemption is not None:
        where.append(coupons.c.redemption_id == expect_redemption)
    return (
        (
            await conn.execute(
                update(coupons)
                .where(and_(*where))
                .values(status=new, redemption_id=redemption_id, updated_at=func.now())
                .returning(coupons)
            )
        )
        .mappings()
        .first()
    )


async def insert_redemption(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping:
    return (await conn.execute(insert(redemptions).values(**values).returning(redemptions))).mappings().one()


async def redemption_by_key(conn: AsyncConnection, kind: str, request_key: str) -> RowMapping | None:
    query = select(redemptions).where(redemptions.c.kind == kind, redemptions.c.request_key == request_key)
    return (await conn.execute(query)).mappings().first()


async def get_redemption(conn: AsyncConnection, redemption_id: str, *, for_update: bool = False) -> RowMapping | None:
    query = select(redemptions).where(redemptions.c.redemption_id == redemption_id)
    return (await conn.execute(query.with_for_update() if for_update else query)).mappings().first()


async def move_redemption(
    conn: AsyncConnection, redemption_id: str, old: str, new: str, **values: Any
) -> RowMapping | None:
    """CAS of a redemption's status; `values` are the facts of the transition (used_at, release_reason…)."""
    return (
        (
            await conn.execute(
                update(redemptions)
                .where(redemptions.c.redemption_id == redemption_id, redemptions.c.status == old)
                .values(status=new, **values)
                .returning(redemptions)
            )
        )
        .mappings()
        .first()
    )


async def expired_locks(conn: AsyncConnection, now: datetime, limit: int) -> list[str]:
    """Ids of locks past their time, skipping rows another replica is handling at this moment."""
    query = (
        select(redemptions.c.redemption_id)
        .where(redemptions.c.status == "locked", redemptions.c.locked_until <= now)
        .order_by(redemptions.c.locked_until)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await conn.execute(query)).scalars())


async def get_refund(conn: AsyncConnection, refund_id: str) -> RowMapping | None:
    query = select(redemption_refunds).where(redemption_refunds.c.refund_id == refund_id)
    return (await conn.execute(query)).mappings().first()


async def insert_refund(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping:
    statement = insert(redemption_refunds).values(**values).returning(redemption_refunds)
    return (await conn.execute(statement)).mappings().one()


async def add_refund_totals(
    conn: AsyncConnection,
    redemption_id: str,
    *,
    refund_minor: int,
    platform_minor: int,
    merchant_minor: int,
    status: str,
) -> RowMapping:
    """Add one refund to the redemption's running totals (the caller holds the row lock)."""
    r = redemptions.c
    return (
        (
            await conn.execute(
                update(redemptions)
                .where(r.redemption_id == redemption_id)
                .values(
                    refunded_minor=r.refunded_minor + refund_minor,
                    reversed_platform_minor=r.reversed_platform_minor + platform_minor,
                    reversed_merchant_minor=r.reversed_merchant_minor + merchant_minor,
                    status=status,
                )
                .returning(redemptions)
            )
        )
        .mappings()
        .one()
    )
