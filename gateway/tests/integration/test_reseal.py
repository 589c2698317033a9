"""`python -m gateway.reseal` after a key rotation, on a real migrated gateway database: a stored idempotent answer
sealed with the old key (k1, retired) still opens, is re-sealed with the new one (k2) once, and then opens without
the old key; every sealed column's query runs against the real schema."""

from __future__ import annotations

import asyncpg

from gateway.domain import idempotency
from gateway.reseal import SEALED_COLUMNS
from libs.common.db import asyncpg_dsn, create_engine
from libs.common.resealing import reseal
from libs.common.sealing import Sealer, new_sealing_key
from libs.common.testing.plugin import DatabaseFactory

BODY = b'{"id":"we_1","secret":"whsec_kept"}'


async def test_a_rotated_key_reseals_what_the_old_one_sealed(migrated_database: DatabaseFactory) -> None:
    url = await migrated_database("gateway")
    old_key, new_key = new_sealing_key(), new_sealing_key()
    row_id = idempotency.sealed_row_id("merchant:mch_1", "hook-1")
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(
            "INSERT INTO idempotency_records (scope, key, request_hash, state, response_status, response_body,"
            " response_sealed, expires_at) VALUES ('merchant:mch_1', 'hook-1', '\\x00', 'done', 201, $1, true,"
            " clock_timestamp() + interval '1 day')",
            Sealer(old_key).seal_bytes(BODY, row_id=row_id),
        )
        rotated = Sealer(new_key, key_id="k2", retired={"k1": old_key})
        stored = await conn.fetchval("SELECT response_body FROM idempotency_records WHERE key = 'hook-1'")
        assert rotated.open_bytes(stored, row_id=row_id) == BODY  # the old key still opens it
        engine = create_engine(url, pool_size=1, max_overflow=0)
        try:
            first, again = await reseal(engine, rotated, SEALED_COLUMNS), await reseal(engine, rotated, SEALED_COLUMNS)
        finally:
            await engine.dispose()
        assert first["idempotency_records.response_body"] == 1 and sum(first.values()) == 1
        assert set(again.values()) == {0}
        stored = await conn.fetchval("SELECT response_body FROM idempotency_records WHERE key = 'hook-1'")
    finally:
        await conn.close()
    assert Sealer(new_key, key_id="k2").open_bytes(stored, row_id=row_id) == BODY  # no old key needed any more
