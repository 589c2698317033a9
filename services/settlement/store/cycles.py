"""Cycles, calendar, settlement entries and batches (SQLAlchemy Core on a given connection)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import ARRAY, Text, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import ArrayInsert
from services.settlement.domain.cycles import DEFAULT_CYCLE, Calendar, Cycle, CycleKind
from services.settlement.store.tables import calendar_days, merchant_cycles, settlement_batches, settlement_entries

CALENDAR_DAYS_MAX = 5000


async def cycle_of(conn: AsyncConnection, holder_id: str) -> Cycle:
    row = (
        (await conn.execute(select(merchant_cycles).where(merchant_cycles.c.holder_id == holder_id))).mappings().first()
    )
    return DEFAULT_CYCLE if row is None else _cycle(row)


async def cycles_of(conn: AsyncConnection, holder_ids: Sequence[str]) -> dict[str, Cycle]:
    """`cycle_of` several holders in one statement; a holder without a cycle of its own is absent (DEFAULT_CYCLE)."""
    rows = (await conn.execute(_CYCLES, {"ids": list(holder_ids)})).mappings()
    return {row["holder_id"]: _cycle(row) for row in rows}


def _cycle(row: RowMapping) -> Cycle:
    return Cycle(CycleKind(row["kind"]), days=row["days"], weekday=row["weekday"], cutoff=row["cutoff"])


_CYCLES = select(merchant_cycles).where(merchant_cycles.c.holder_id == func.any(bindparam("ids", type_=ARRAY(Text))))

# Every entry written (a payment's, a run of payments', a refund's, a split's) in one statement on asyncpg.
_ADD_ENTRIES = ArrayInsert(
    settlement_entries,
    ("livemode", "source_key", "holder_id", "currency", "amount_minor", "due_date", "kind", "payment_id", "refund_id"),
    "ON CONFLICT (source_key) DO NOTHING",
)


async def calendar(conn: AsyncConnection) -> Calendar:
    rows = await conn.execute(select(calendar_days.c.day, calendar_days.c.business_day).limit(CALENDAR_DAYS_MAX))
    return Calendar({row.day: row.business_day for row in rows})


async def add_entries(conn: AsyncConnection, entries: list[dict[str, Any]]) -> None:
    """Entries with a 0 amount are dropped; a repeated `source_key` is a no-op."""
    rows = [e for e in entries if e["amount_minor"] != 0]
    if rows:
        unknown = {key for row in rows for key in row} - set(_ADD_ENTRIES.columns)
        if unknown:
            raise ValueError(f"not columns of an entry: {sorted(unknown)}")
        await _ADD_ENTRIES.fetch(conn, rows)


async def due_holders(conn: AsyncConnection, cycle_date: date, limit: int) -> list[tuple[str, str, bool]]:
    """(holder, currency, livemode) with due unbatched entries: test and live money are settled apart."""
    rows = await conn.execute(
        select(settlement_entries.c.holder_id, settlement_entries.c.currency, settlement_entries.c.livemode)
        .where(settlement_entries.c.batch_id.is_(None), settlement_entries.c.due_date <= cycle_date)
        .group_by(settlement_entries.c.holder_id, settlement_entries.c.currency, settlement_entries.c.livemode)
        .limit(limit)
    )
    return [(row.holder_id, row.currency, row.livemode) for row in rows]


async def build_batch(
    conn: AsyncConnection, batch_id: str, holder_id: str, currency: str, cycle_date: date, *, livemode: bool = True
) -> bool:
    """Take every due, unbatched entry of the holder in one mode into a new batch, in this transaction.

    The unique (holder, currency, cycle_date, livemode) makes a second runner wait for the first and then find
    the batch taken; FOR UPDATE on the entries keeps a concurrent builder from taking them twice. Returns
    False (nothing written) when the batch of that day exists or the entries do not add up to > 0
    (a refund-heavy holder: they stay open and are netted next time)."""
    inserted = await conn.execute(
        insert(settlement_batches)
        .values(
            batch_id=batch_id,
            holder_id=holder_id,
            currency=currency,
            cycle_date=cycle_date,
            amount_minor=0,
            entry_count=0,
            status="building",
            livemode=livemode,
        )
        .on_conflict_do_nothing(constraint="settlement_batches_one_per_day")
    )
    if not inserted.rowcount:
        return False
    open_entries = (
        select(settlement_entries.c.entry_id)
        .where(
            settlement_entries.c.holder_id == holder_id,
            settlement_entries.c.currency == currency,
            settlement_entries.c.batch_id.is_(None),
            settlement_entries.c.due_date <= cycle_date,
            settlement_entries.c.livemode == livemode,
        )
        .with_for_update()
    )
    taken = await conn.execute(
        update(settlement_entries)
        .where(settlement_entries.c.entry_id.in_(open_entries.scalar_subquery()))
        .values(batch_id=batch_id)
        .returning(settlement_entries.c.amount_minor)
    )
    amounts = [int(a) for a in taken.scalars()]
    total = sum(amounts)
    if total <= 0:
        await conn.execute(
            update(settlement_entries).where(settlement_entries.c.batch_id == batch_id).values(batch_id=None)
        )
        await conn.execute(settlement_batches.delete().where(settlement_batches.c.batch_id == batch_id))
        return False
    await conn.execute(
        update(settlement_batches)
        .where(settlement_batches.c.batch_id == batch_id)
        .values(amount_minor=total, entry_count=len(amounts), status="built")
    )
    return True


async def unposted_batches(conn: AsyncConnection, limit: int) -> list[RowMapping]:
    rows = await conn.execute(
        select(settlement_batches)
        .where(settlement_batches.c.status == "built")
        .order_by(settlement_batches.c.batch_id)
        .limit(limit)
    )
    return list(rows.mappings())


async def mark_batch_posted(conn: AsyncConnection, batch_id: str, transfer_id: str, now: datetime) -> bool:
    result = await conn.execute(
        update(settlement_batches)
        .where(settlement_batches.c.batch_id == batch_id, settlement_batches.c.status == "built")
        .values(status="posted", ledger_transfer_id=transfer_id, posted_at=now)
    )
    return bool(result.rowcount)


async def batch_totals_by_kind(conn: AsyncConnection, batch_id: str) -> dict[str, int]:
    """What a batch is made of: signed sums of its entries per kind (payment, split, refund, reversal)."""
    rows = await conn.execute(
        select(settlement_entries.c.kind, func.sum(settlement_entries.c.amount_minor))
        .where(settlement_entries.c.batch_id == batch_id)
        .group_by(settlement_entries.c.kind)
    )
    return {str(kind): int(amount) for kind, amount in rows}


async def batches_of(
    conn: AsyncConnection, holder_id: str | None, limit: int, *, livemode: bool | None = None
) -> list[RowMapping]:
    query = select(settlement_batches).order_by(settlement_batches.c.cycle_date.desc()).limit(limit)
    if holder_id:
        query = query.where(settlement_batches.c.holder_id == holder_id)
    if livemode is not None:
        query = query.where(settlement_batches.c.livemode == livemode)
    return list((await conn.execute(query)).mappings())


async def batches_page(
    conn: AsyncConnection, holder_id: str | None, before_id: str | None, limit: int, *, livemode: bool | None = None
) -> list[RowMapping]:
    """Batches newest first (batch ids are time-ordered), those older than `before_id`; one holder's and one
    mode's if given."""
    query = select(settlement_batches)
    if holder_id:
        query = query.where(settlement_batches.c.holder_id == holder_id)
    if livemode is not None:
        query = query.where(settlement_batches.c.livemode == livemode)
    if before_id:
        query = query.where(settlement_batches.c.batch_id < before_id)
    return list((await conn.execute(query.order_by(settlement_batches.c.batch_id.desc()).limit(limit))).mappings())


async def totals(conn: AsyncConnection, holder_id: str, *, livemode: bool | None = None) -> dict[str, dict[str, int]]:
    """Per currency, of one mode (both with None: a caller that did not choose one): settled (posted batches), in
    settlement (built batches), pending (open entries)."""
    out: dict[str, dict[str, int]] = {}
    b, e = settlement_batches.c, settlement_entries.c
    batch_mode = [b.livemode == livemode] if livemode is not None else []
    entry_mode = [e.livemode == livemode] if livemode is not None else []
    batch_rows = await conn.execute(
        select(b.currency, b.status, func.sum(b.amount_minor))
        .where(b.holder_id == holder_id, *batch_mode)
        .group_by(b.currency, b.status)
    )
    for currency, status, amount in batch_rows:
        bucket = out.setdefault(currency, {"settled_minor": 0, "settling_minor": 0, "pending_minor": 0})
        bucket["settled_minor" if status == "posted" else "settling_minor"] += int(amount)
    open_rows = await conn.execute(
        select(e.currency, func.sum(e.amount_minor))
        .where(e.holder_id == holder_id, e.batch_id.is_(None), *entry_mode)
        .group_by(e.currency)
    )
    for currency, amount in open_rows:
        bucket = out.setdefault(currency, {"settled_minor": 0, "settling_minor": 0, "pending_minor": 0})
        bucket["pending_minor"] += int(amount)
    return out
