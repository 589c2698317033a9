"""The create's lookup by merchant order number uses the unique index even before `payments` has statistics
(migration 0025): a plan made on a fresh database's nearly empty table picked an index that reads every payment of
the merchant, and a prepared statement kept it (docs/performance.md, "Seventh pass: database")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

LOOKUP = "SELECT id FROM payments WHERE merchant_id = $1::varchar AND merchant_order_no = $2::varchar"


async def test_the_order_lookup_uses_the_unique_index_on_a_table_without_statistics(
    migrated_database: Callable[[str], Awaitable[str]],
) -> None:
    url = (await migrated_database("cashier")).replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO payments (id, merchant_id, merchant_order_no, request_sha256, amount_minor, currency,"
            " description, scene, livemode, status, expire_at)"
            " SELECT 'pay_' || g, 'mch_a', 'order_' || g, 'x', 100 + g, 'CNY', 'd', 'native_qr', false, 'created',"
            " now() + interval '1 hour' FROM generate_series(1, 50) AS g"
        )
        assert await conn.fetchval("SELECT reltuples FROM pg_class WHERE relname = 'payments'") < 0  # never analyzed
        # The plan a prepared statement caches after its first executions (the generic plan).
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE lookup AS {LOOKUP}")
        plan = "\n".join(row[0] for row in await conn.fetch("EXPLAIN EXECUTE lookup('mch_a', 'order_7')"))
        assert "uq_payments_merchant_order" in plan, plan
    finally:
        await conn.close()
