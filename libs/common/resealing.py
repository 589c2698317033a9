"""Re-sealing stored values with the current key of a sealing key ring (libs/common/sealing.py), so a retired key
can leave the ring (docs/operations.md §Sealing keys). Apart from `sealing` because it needs the database: domain
code that seals (gateway/domain/credentials.py) imports no database library."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common.db import create_engine
from libs.common.sealing import Sealer

RESEAL_BATCH_ROWS = 500


@dataclass(frozen=True, slots=True)
class SealedColumn:
    """Where a service keeps sealed values: `row_id` is the SQL expression of the id each value is bound to (as the
    code that sealed it computed it), unique per row; `where` narrows the rows (e.g. only sealed responses)."""

    table: str
    column: str
    row_id: str
    where: str = "TRUE"


async def reseal(engine: AsyncEngine, sealer: Sealer, columns: tuple[SealedColumn, ...]) -> dict[str, int]:
    """Re-seal with the current key every value sealed with another (a retired key, or none: version 1), so the
    retired key can then leave the ring (docs/operations.md §Sealing keys). Batches of `RESEAL_BATCH_ROWS`, one
    transaction each; every update is a compare-and-set on the value read, so a value the service changed meanwhile
    (a rotation) is left as it is, already sealed with the current key. Idempotent: a second run changes nothing.
    Returns how many values each `table.column` had re-sealed. Table and column names come from the service's own
    fixed list, never from input."""
    done: dict[str, int] = {}
    for col in columns:
        name, count, after = f"{col.table}.{col.column}", 0, ""
        select = text(
            f"SELECT {col.row_id} AS row_id, {col.column} AS sealed FROM {col.table} "
            f"WHERE {col.column} IS NOT NULL AND ({col.where}) AND {col.row_id} > :after ORDER BY 1 LIMIT :n"
        )
        update = text(
            f"UPDATE {col.table} SET {col.column} = :new WHERE {col.row_id} = :row_id AND {col.column} = :old"
        )
        while True:
            async with engine.begin() as conn:
                rows = (await conn.execute(select, {"after": after, "n": RESEAL_BATCH_ROWS})).all()
                for row_id, sealed in rows:
                    if sealer.needs_reseal(sealed):
                        new = sealer.seal_bytes(sealer.open_bytes(sealed, row_id=row_id), row_id=row_id)
                        result = await conn.execute(update, {"new": new, "row_id": row_id, "old": bytes(sealed)})
                        count += result.rowcount or 0
            if len(rows) < RESEAL_BATCH_ROWS:
                break
            after = rows[-1][0]
        done[name] = count
    return done


async def reseal_database(database_url: str, sealer: Sealer, columns: tuple[SealedColumn, ...]) -> dict[str, int]:
    """`reseal` on a service's database by URL (the services' `python -m … reseal` commands): one connection."""
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        return await reseal(engine, sealer, columns)
    finally:
        await engine.dispose()
