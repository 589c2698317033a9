"""Helpers for cross-service end-to-end tests (real processes, real PostgreSQL, real broker)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from libs.common.outbox_tables import inbox
from services.settlement.store.tables import ledger_accounts

EVENT_WAIT_SECONDS = 60.0


@pytest.fixture
async def engines() -> AsyncIterator[Callable[[str], AsyncEngine]]:
    made: list[AsyncEngine] = []

    def make(url: str) -> AsyncEngine:
        engine = create_async_engine(url)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.dispose()


async def open_account(base_url: str, holder_id: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        response = await client.post(
            "/v1/accounts",
            json={"holder_id": holder_id, "currency": "CNY", "kind": "merchant_settled", "code": "2202"},
        )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def mirrored(
    engine: AsyncEngine, account_ids: list[str], *, wait_seconds: float = EVENT_WAIT_SECONDS
) -> dict[str, Any]:
    """Wait until settlement mirrors every account; return {account_id: applied_count}."""
    deadline = asyncio.get_running_loop().time() + wait_seconds
    rows: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        async with engine.connect() as conn:
            result = await conn.execute(
                select(ledger_accounts.c.account_id, ledger_accounts.c.applied_count).where(
                    ledger_accounts.c.account_id.in_(account_ids)
                )
            )
            rows = {r.account_id: r.applied_count for r in result}
        if len(rows) == len(account_ids):
            return rows
        await asyncio.sleep(0.2)
    raise AssertionError(f"settlement mirrored only {sorted(rows)} of {sorted(account_ids)}")


async def inbox_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return len((await conn.execute(select(inbox.c.event_id))).all())
