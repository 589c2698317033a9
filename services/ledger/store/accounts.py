"""Account queries of the ledger store."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ledger.store.tables import accounts


async def insert_account(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping:
    return (await conn.execute(insert(accounts).values(**values).returning(*accounts.c))).mappings().one()


async def get_account(conn: AsyncConnection, account_id: str) -> RowMapping | None:
    return (await conn.execute(select(accounts).where(accounts.c.id == account_id))).mappings().first()
