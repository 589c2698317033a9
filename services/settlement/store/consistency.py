"""Settlement's side of the settlement ↔ ledger check, and the stored results of each run."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, func, insert, literal, or_, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from services.settlement.store.tables import (
    consistency_checks,
    ledger_accounts,
    settlement_batches,
    settlement_entries,
    split_executions,
)

# Splits whose entries exist here but whose ledger transfer is not posted yet: work settlement itself has
# in flight (the split poster, an escrow confirmation), not a difference.
IN_FLIGHT_SPLIT_STATUSES = ("pending", "confirming")
CHECKS_KEPT = 1000


async def unsettled_net(conn: AsyncConnection) -> dict[tuple[str, str, bool], int]:
    """(holder, currency, livemode) → Σ settlement entries not yet taken out of 2201 by a posted batch, leaving out the
    entries of splits settlement has not posted to the ledger yet. This is what settlement believes each
    holder's merchant_pending (2201) posted balance is.

    Read as two index-backed parts, never a scan of the settled history: entries in no batch (partial index
    `settlement_entries_open`) and entries of batches not posted yet (`settlement_entries_batch`)."""
    e, b, s = settlement_entries.c, settlement_batches.c, split_executions.c
    unposted_batches = select(b.batch_id).where(b.status != "posted").scalar_subquery()
    open_entries = (
        select(e.holder_id, e.currency, e.livemode, e.amount_minor, e.kind, e.source_key)
        .where(e.batch_id.is_(None))
        .union_all(
            select(e.holder_id, e.currency, e.livemode, e.amount_minor, e.kind, e.source_key).where(
                e.batch_id.in_(unposted_batches)
            )
        )
        .subquery()
    )
    o = open_entries.c
    split_of_entry = func.split_part(o.source_key, literal(":"), 1)
    query = (
        select(o.holder_id, o.currency, o.livemode, func.sum(o.amount_minor).label("net"))
        .select_from(
            open_entries.outerjoin(
                split_executions, and_(o.kind.in_(("split", "reversal")), s.split_id == split_of_entry)
            )
        )
        .where(or_(s.split_id.is_(None), s.status.not_in(IN_FLIGHT_SPLIT_STATUSES)))
        .group_by(o.holder_id, o.currency, o.livemode)
    )
    return {(row.holder_id, row.currency, row.livemode): int(row.net) for row in await conn.execute(query)}


async def ledger_holders(conn: AsyncConnection) -> set[str]:
    """Holders with a merchant_pending account in settlement's mirror of the ledger's accounts."""
    rows = await conn.execute(
        select(ledger_accounts.c.holder_id).where(ledger_accounts.c.kind == "merchant_pending").distinct()
    )
    return {str(h) for h in rows.scalars()}


async def entry_holders(conn: AsyncConnection) -> set[str]:
    rows = await conn.execute(select(settlement_entries.c.holder_id).distinct())
    return {str(h) for h in rows.scalars()}


async def save(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping:
    c = consistency_checks.c
    saved = (await conn.execute(insert(consistency_checks).values(**values).returning(consistency_checks))).mappings()
    row = saved.one()
    await conn.execute(delete(consistency_checks).where(c.check_id <= row["check_id"] - CHECKS_KEPT))
    return row


async def latest(conn: AsyncConnection) -> RowMapping | None:
    query = select(consistency_checks).order_by(consistency_checks.c.check_id.desc()).limit(1)
    return (await conn.execute(query)).mappings().first()
