"""Cashier migration 0023 seals the webhook secrets already stored in plain text (a real PostgreSQL database,
migrated to 0022, given plain rows, then upgraded): afterwards no plain column is left, each sealed value opens
with the cashier's key to the secret it replaced, bound to its own row. Then a key rotation: `reseal` re-seals
them with the new key, after which the old key can leave the ring."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from sqlalchemy import text

from libs.common.db import asyncpg_dsn, create_engine
from libs.common.embedded import create_database, database_url
from libs.common.migrations import upgrade
from libs.common.resealing import reseal
from libs.common.sealing import Sealer, SealError, new_sealing_key
from libs.common.services import SERVICES
from libs.common.testing.infra import Infra
from services.cashier.config import DEMO_SECRETS_KEY
from services.cashier.reseal import SEALED_COLUMNS


async def test_migration_0023_seals_the_existing_plain_secrets(juhe_infra: Infra) -> None:
    name = f"t_cashier_seal_{uuid.uuid4().hex[:12]}"
    await create_database(juhe_infra.server_url, name)
    juhe_infra.created_databases.append(name)
    url = database_url(juhe_infra.server_url, name)
    migrations = SERVICES["cashier"].migrations_dir
    await asyncio.to_thread(upgrade, migrations, url, "0022")
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("INSERT INTO merchants (merchant_id, webhook_secret) VALUES ('mch_a', 'whsec_merchant')")
        await conn.execute(
            "INSERT INTO webhook_endpoints (id, merchant_id, url, enabled_events, secret, livemode, previous_secret,"
            " previous_secret_expires_at) VALUES ('whe_1', 'mch_a', 'https://m.example/h', '[\"*\"]', 'whsec_new',"
            " false, 'whsec_old', now() + interval '1 hour'), ('whe_2', 'mch_a', 'https://m.example/h', '[\"*\"]',"
            " 'whsec_only', true, NULL, NULL)"
        )
        await asyncio.to_thread(upgrade, migrations, url)
        merchant = await conn.fetchrow("SELECT * FROM merchants WHERE merchant_id = 'mch_a'")
        endpoints = await conn.fetch("SELECT * FROM webhook_endpoints ORDER BY id")
    finally:
        await conn.close()
    assert merchant is not None and "webhook_secret" not in set(merchant.keys())  # (a Record's `in` reads values)
    assert not {"secret", "previous_secret"} & set(endpoints[0].keys())
    sealer = Sealer(DEMO_SECRETS_KEY)  # the key of this process's cashier settings (none set: the demo one)
    assert sealer.open(merchant["webhook_secret_sealed"], row_id="mch_a") == "whsec_merchant"
    first, second = endpoints
    assert b"whsec_" not in bytes(first["secret_sealed"]) + bytes(first["previous_secret_sealed"])
    assert sealer.open(first["secret_sealed"], row_id="whe_1") == "whsec_new"
    assert sealer.open(first["previous_secret_sealed"], row_id="whe_1") == "whsec_old"
    assert sealer.open(second["secret_sealed"], row_id="whe_2") == "whsec_only"
    assert second["previous_secret_sealed"] is None
    with pytest.raises(SealError):  # bound to its row: moved onto another, it does not open
        sealer.open(first["secret_sealed"], row_id="whe_2")

    # Rotation: k2 current, the old key retired; the re-seal moves every value to k2 (once), then k2 alone opens.
    new_key = new_sealing_key()
    rotated = Sealer(new_key, key_id="k2", retired={"k1": DEMO_SECRETS_KEY})
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        assert await reseal(engine, rotated, SEALED_COLUMNS) == {
            "merchants.webhook_secret_sealed": 1,
            "webhook_endpoints.secret_sealed": 2,
            "webhook_endpoints.previous_secret_sealed": 1,
        }
        assert set((await reseal(engine, rotated, SEALED_COLUMNS)).values()) == {0}
        async with engine.connect() as sa_conn:
            resealed = (
                await sa_conn.execute(text("SELECT secret_sealed FROM webhook_endpoints WHERE id = 'whe_1'"))
            ).one()
    finally:
        await engine.dispose()
    assert Sealer(new_key, key_id="k2").open(resealed.secret_sealed, row_id="whe_1") == "whsec_new"
