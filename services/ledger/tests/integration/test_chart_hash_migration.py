"""Ledger migration 0010 rebinds a wallet's chart sub-accounts to the chart's documented opening body (a real
PostgreSQL database migrated to 0009, given a merchant holder's 2201 with the old hash, then upgraded): the
cashier's wallet connector's `POST /v1/accounts` body then finds it instead of a 409."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from libs.common.db import asyncpg_dsn
from libs.common.embedded import create_database, database_url
from libs.common.migrations import upgrade
from libs.common.services import SERVICES
from libs.common.testing.infra import Infra
from services.ledger.events.accounts import AccountCreateRequest

KEY = "chart:merchant_pending:mch_a:CNY"


async def test_migration_0010_binds_chart_subaccounts_to_the_documented_body(juhe_infra: Infra) -> None:
    name = f"t_ledger_chart_{uuid.uuid4().hex[:12]}"
    await create_database(juhe_infra.server_url, name)
    juhe_infra.created_databases.append(name)
    url = database_url(juhe_infra.server_url, name)
    migrations = SERVICES["ledger"].migrations_dir
    await asyncio.to_thread(upgrade, migrations, url, "0009")
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(
            "INSERT INTO accounts (id, holder_id, currency, kind, code, metadata, idempotency_key, body_hash) VALUES"
            " ('acc_1', 'mch_a', 'CNY', 'merchant_pending', '2201', '{\"wallet_subaccount\": \"merchant_pending\"}',"
            " $1, 'old'),"
            " ('acc_2', 'mch_a', 'CNY', 'custom', '2299', '{\"wallet_subaccount\": \"x\"}', 'mine', 'keep')",
            KEY,
        )
        await asyncio.to_thread(upgrade, migrations, url)
        hashes = dict(await conn.fetch("SELECT id, body_hash FROM accounts ORDER BY id"))
    finally:
        await conn.close()
    documented = {"holder_id": "mch_a", "currency": "CNY", "kind": "merchant_pending", "code": "2201", "metadata": {}}
    assert hashes == {"acc_1": AccountCreateRequest.model_validate(documented).body_hash(), "acc_2": "keep"}
