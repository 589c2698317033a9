"""The create's lookup by merchant order number uses the unique index even before `payments` has statistics
(migration 0025): a plan made on a fresh database's nearly empty table picked an index that reads every payment of
the merchant, and a prepared statement kept it (docs/performance.md, "Seventh pass: database")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

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


async def test_a_merchants_read_by_id_uses_the_primary_key_and_still_sees_only_its_own_payments(
    migrated_database: Callable[[str], Awaitable[str]],
) -> None:
    """`get_payment` reads by the primary key alone (a `merchant_id` in its WHERE tied with every merchant-leading
    index on a never-analyzed table and read every payment of the merchant) and checks the owner and mode itself.
    The plan checked is that of the statement `get_payment` itself sends."""
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import create_async_engine

    from services.cashier.store.payments import get_payment

    url = await migrated_database("cashier")
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    engine = create_async_engine(url)
    sent: list[tuple[str, Sequence[Any]]] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: sent.append((a[2], a[3])))
    try:
        await conn.execute(
            "INSERT INTO payments (id, merchant_id, merchant_order_no, request_sha256, amount_minor, currency,"
            " description, scene, livemode, status, expire_at)"
            " SELECT 'pay_' || g, 'mch_a', 'order_' || g, 'x', 100 + g, 'CNY', 'd', 'native_qr', g = 2, 'created',"
            " now() + interval '1 hour' FROM generate_series(1, 50) AS g"
        )
        async with engine.connect() as sa:
            found = await get_payment(sa, merchant_id="mch_a", payment_id="pay_7", livemode=False)
            assert found is not None and found.id == "pay_7"
            assert await get_payment(sa, merchant_id="mch_b", payment_id="pay_7") is None  # another merchant's
            assert await get_payment(sa, merchant_id="mch_a", payment_id="pay_7", livemode=True) is None
            assert await get_payment(sa, merchant_id="mch_a", payment_id="pay_2", livemode=True) is not None
            assert await get_payment(sa, merchant_id="mch_a", payment_id="pay_404") is None
        statement, parameters = sent[0]
        assert await conn.fetchval("SELECT reltuples FROM pg_class WHERE relname = 'payments'") < 0  # never analyzed
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE read_by_id AS {statement}")
        arguments = ", ".join(f"'{value}'" for value in parameters)
        plan = "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN EXECUTE read_by_id({arguments})"))
        assert "payments_pkey" in plan, plan
    finally:
        await engine.dispose()
        await conn.close()
