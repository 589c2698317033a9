"""A merchant's pinned API version (column `merchants.api_version`)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.store.tables import merchants


async def pinned_version(conn: AsyncConnection, merchant_id: str) -> str | None:
    return (await conn.execute(select(merchants.c.api_version).where(merchants.c.id == merchant_id))).scalar()


async def pin_version(conn: AsyncConnection, merchant_id: str, *, platform_id: str, api_version: str) -> bool:
    """False when the platform has no such merchant."""
    stmt = (
        update(merchants)
        .where(merchants.c.id == merchant_id, merchants.c.platform_id == platform_id)
        .values(api_version=api_version)
        .returning(merchants.c.id)
    )
    return (await conn.execute(stmt)).first() is not None
