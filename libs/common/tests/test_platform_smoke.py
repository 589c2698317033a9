"""The plumbing end to end in-process: an account opened in the ledger reaches settlement once."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from libs.common.testing.plugin import DatabaseFactory, RunningApps, ServiceSettings
from services.ledger.app import create_app as ledger_app
from services.settlement.app import create_app as settlement_app
from services.settlement.store.tables import ledger_accounts


async def test_event_flows_from_ledger_to_settlement(
    migrated_database: DatabaseFactory, service_settings: ServiceSettings, running_apps: RunningApps
) -> None:
    ledger_db = await migrated_database("ledger")
    settlement_db = await migrated_database("settlement")
    ledger = await running_apps(ledger_app(service_settings("ledger", database_url=ledger_db)))
    await running_apps(settlement_app(service_settings("settlement", database_url=settlement_db)))

    response = await ledger.post(
        "/v1/accounts", json={"holder_id": "mch_1", "currency": "CNY", "kind": "merchant_pending", "code": "2201"}
    )
    assert response.status_code == 201, response.text
    account_id = response.json()["id"]

    engine = create_async_engine(settlement_db)
    try:
        for _ in range(300):
            async with engine.connect() as conn:
                row = (
                    await conn.execute(select(ledger_accounts).where(ledger_accounts.c.account_id == account_id))
                ).first()
            if row is not None:
                break
            await asyncio.sleep(0.1)
        assert row is not None, "account.opened never reached settlement"
        assert row.applied_count == 1
        assert row.holder_id == "mch_1"
    finally:
        await engine.dispose()
