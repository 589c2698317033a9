"""Campaign and stock rows, the budget reservation and the claim counters (SQLAlchemy Core).

The budget and the limits are changed only by single conditional statements (never read, then write), so
they hold exactly under any number of concurrent claims on any number of replicas."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from services.marketing.domain.rules import StockRules
from services.marketing.store.tables import campaigns, claim_counters, coupon_stocks

TOTAL_PERIOD = "total"
WHOLE_STOCK = "*"


async def insert_campaign(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping:
    return (await conn.execute(insert(campaigns).values(**values).returning(campaigns))).mappings().one()


async def get_campaign(conn: AsyncConnection, campaign_id: str, owner: str | None = None) -> RowMapping | None:
    """The campaign; with `owner`, only if that merchant owns it (another's is "not found")."""
    query = select(campaigns).where(campaigns.c.campaign_id == campaign_id)
    if owner is not None:
        query = query.where(campaigns.c.owner_merchant_id == owner)
    return (await conn.execute(query)).mappings().first()


async def list_campaigns(
    conn: AsyncConnection, *, owner: str | None, before_id: str | None, limit: int
) -> list[RowMapping]:
    query = select(campaigns).order_by(campaigns.c.campaign_id.desc()).limit(limit)
    if owner is not None:
        query = query.where(campaigns.c.owner_merchant_id == owner)
    if before_id:
        query = query.where(campaigns.c.campaign_id < before_id)
    return list((await conn.execute(query)).mappings())


async def insert_stock(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping:
    return (await conn.execute(insert(coupon_stocks).values(**values).returning(coupon_stocks))).mappings().one()


async def get_stock(conn: AsyncConnection, stock_id: str, owner: str | None = None) -> RowMapping | None:
    query = select(coupon_stocks).where(coupon_stocks.c.stock_id == stock_id)
    if owner is not None:
        query = query.where(coupon_stocks.c.owner_merchant_id == owner)
    return (await conn.execute(query)).mappings().first()


async def list_stocks(
    conn: AsyncConnection, *, owner: str | None, campaign_id: str | None, before_id: str | None, limit: int
) -> list[RowMapping]:
    query = select(coupon_stocks).order_by(coupon_stocks.c.stock_id.desc()).limit(limit)
    if owner is not None:
        query = query.where(coupon_stocks.c.owner_merchant_id == owner)
    if campaign_id is not None:
        query = query.where(coupon_stocks.c.campaign_id == campaign_id)
    if before_id:
        query = query.where(coupon_stocks.c.stock_id < before_id)
    return list((await conn.execute(query)).mappings())


async def change_status(conn: AsyncConnection, stock_id: str, old: str, new: str) -> RowMapping | None:
    """Compare-and-set of a stock's status: None if it was no longer `old`."""
    return (
        (
            await conn.execute(
                update(coupon_stocks)
                .where(coupon_stocks.c.stock_id == stock_id, coupon_stocks.c.status == old)
                .values(status=new, updated_at=func.now())
                .returning(coupon_stocks)
            )
        )
        .mappings()
        .first()
    )


async def reserve_one(conn: AsyncConnection, stock_id: str) -> RowMapping | None:
    """Take one coupon's count and face value from the stock's budget, only if the stock is running and both
    suffice: one statement, so the row lock PostgreSQL takes for the UPDATE serialises concurrent claims and
    every one of them re-evaluates the WHERE on the latest committed row. None: nothing taken."""
    c = coupon_stocks.c
    return (
        (
            await conn.execute(
                update(coupon_stocks)
                .where(
                    c.stock_id == stock_id,
                    c.status == "running",
                    c.remaining_count >= 1,
                    c.remaining_budget_minor >= c.face_value_minor,
                )
                .values(
                    remaining_count=c.remaining_count - 1,
                    remaining_budget_minor=c.remaining_budget_minor - c.face_value_minor,
                    updated_at=func.now(),
                )
                .returning(coupon_stocks)
            )
        )
        .mappings()
        .first()
    )


async def set_budget(
    conn: AsyncConnection, stock_id: str, *, budget_count: int, budget_minor: int
) -> RowMapping | None:
    """Set the stock's budget totals to these targets and move the remainders by the same difference, in one
    conditional UPDATE: never below what claims have already taken (the WHERE is re-checked under the row
    lock, so a concurrent claim cannot slip between), never on an ended stock. A repeat is a no-op (same
    target). None: refused (the caller says why)."""
    c = coupon_stocks.c
    count_delta = budget_count - c.budget_count
    minor_delta = budget_minor - c.budget_minor
    return (
        (
            await conn.execute(
                update(coupon_stocks)
                .where(
                    c.stock_id == stock_id,
                    c.status != "ended",
                    c.remaining_count + count_delta >= 0,
                    c.remaining_budget_minor + minor_delta >= 0,
                )
                .values(
                    budget_count=budget_count,
                    budget_minor=budget_minor,
                    remaining_count=c.remaining_count + count_delta,
                    remaining_budget_minor=c.remaining_budget_minor + minor_delta,
                    updated_at=func.now(),
                )
                .returning(coupon_stocks)
            )
        )
        .mappings()
        .first()
    )


async def count_claim(conn: AsyncConnection, stock_id: str, subject: str, period: str, limit: int) -> bool:
    """Add one claim to the (stock, subject, period) counter if it stays within `limit`: an upsert whose
    update branch is conditional, so two claims racing for the last slot cannot both succeed (the second
    waits for the first's row lock, then sees the new count). False: the limit was already reached."""
    statement = (
        insert(claim_counters)
        .values(stock_id=stock_id, subject=subject, period=period, claimed_count=1)
        .on_conflict_do_update(
            index_elements=[claim_counters.c.stock_id, claim_counters.c.subject, claim_counters.c.period],
            set_={"claimed_count": claim_counters.c.claimed_count + 1},
            where=claim_counters.c.claimed_count < limit,
        )
        .returning(claim_counters.c.claimed_count)
    )
    return (await conn.execute(statement)).first() is not None


def rules_of(row: RowMapping) -> StockRules:
    return StockRules(
        discount_kind=row["discount_kind"],
        currency=row["currency"],
        amount_off_minor=row["amount_off_minor"],
        percent_off_bps=row["percent_off_bps"],
        discount_cap_minor=row["discount_cap_minor"],
        threshold_minor=row["threshold_minor"],
        funding_party=row["funding_party"],
        platform_share_bps=row["platform_share_bps"],
        merchant_ids=tuple(row["merchant_ids"]),
        store_ids=tuple(row["store_ids"]),
        scenes=tuple(row["scenes"]),
        payment_methods=tuple(row["payment_methods"]),
    )
