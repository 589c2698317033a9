"""The reconciliation exceptions pool (SQLAlchemy Core on a given connection).

An exception is a `reconciliation_items` row of a day's **latest finished run** (running the day again
supersedes the earlier run's items: what it still finds is listed once, under the new run); its work state
is the `reconciliation_exceptions` row, `open` when there is none yet. Pages go by item id, oldest first
(the oldest mismatch is the most urgent), so paging never counts rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, exists, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select
from sqlalchemy.sql.expression import Exists

from services.settlement.store.tables import (
    reconciliation_exception_actions as actions,
)
from services.settlement.store.tables import (
    reconciliation_exceptions as exceptions,
)
from services.settlement.store.tables import (
    reconciliation_items as items,
)
from services.settlement.store.tables import (
    reconciliation_runs as runs,
)

later = runs.alias("later")


def _superseded() -> Exists:
    """A later finished run of the same channel, merchant and day exists (its items replace these)."""
    return exists().where(
        later.c.channel == runs.c.channel,
        later.c.merchant_id == runs.c.merchant_id,
        later.c.bill_date == runs.c.bill_date,
        later.c.status == "finished",
        later.c.started_at > runs.c.started_at,
    )


def _pool() -> Select[Any]:
    """Items of finished runs with their work state and the run's channel, merchant, day and time found."""
    return select(
        items,
        runs.c.channel,
        runs.c.merchant_id,
        runs.c.bill_date,
        runs.c.finished_at.label("found_at"),
        func.coalesce(exceptions.c.state, literal("open")).label("state"),
        exceptions.c.assignee,
        exceptions.c.resolution_reason,
        exceptions.c.resolved_by,
        exceptions.c.resolved_at,
        func.coalesce(exceptions.c.requery_count, 0).label("requery_count"),
        exceptions.c.last_requery,
        exceptions.c.last_requery_at,
        _superseded().label("superseded"),
        func.floor(func.extract("epoch", func.now() - runs.c.finished_at)).label("age_seconds"),
    ).select_from(
        items.join(runs, and_(runs.c.run_id == items.c.run_id, runs.c.status == "finished")).outerjoin(
            exceptions, exceptions.c.item_id == items.c.item_id
        )
    )


async def list_pool(
    conn: AsyncConnection,
    *,
    state: str,
    assignee: str | None,
    channel: str | None,
    merchant_id: str | None,
    outcome: str | None,
    after_id: int,
    limit: int,
) -> list[RowMapping]:
    """Up to `limit` exceptions after `after_id` (the caller asks one more to know whether there are more)."""
    query = _pool().where(items.c.item_id > after_id, ~_superseded())
    current = func.coalesce(exceptions.c.state, literal("open"))
    query = query.where(current != "resolved") if state == "unresolved" else query.where(current == state)
    if assignee:
        query = query.where(exceptions.c.assignee == assignee)
    if channel:
        query = query.where(runs.c.channel == channel)
    if merchant_id:
        query = query.where(runs.c.merchant_id == merchant_id)
    if outcome:
        query = query.where(items.c.outcome == outcome)
    rows = await conn.execute(query.order_by(items.c.item_id).limit(limit))
    return list(rows.mappings())


async def get(conn: AsyncConnection, item_id: int) -> RowMapping | None:
    return (await conn.execute(_pool().where(items.c.item_id == item_id))).mappings().first()


async def lock(conn: AsyncConnection, item_id: int) -> str | None:
    """The item's work state, its row created (`open`) and locked for this transaction; None: no such item
    in a finished run."""
    found = await conn.execute(
        select(items.c.item_id)
        .select_from(items.join(runs, runs.c.run_id == items.c.run_id))
        .where(items.c.item_id == item_id, runs.c.status == "finished")
    )
    if found.first() is None:
        return None
    await conn.execute(pg_insert(exceptions).values(item_id=item_id, state="open").on_conflict_do_nothing())
    row = await conn.execute(select(exceptions.c.state).where(exceptions.c.item_id == item_id).with_for_update())
    return str(row.scalar_one())


async def assign(conn: AsyncConnection, item_id: int, *, assignee: str) -> None:
    await conn.execute(
        update(exceptions)
        .where(exceptions.c.item_id == item_id)
        .values(state="assigned", assignee=assignee, version=exceptions.c.version + 1, updated_at=func.now())
    )


async def resolve(conn: AsyncConnection, item_id: int, *, reason: str, actor: str) -> None:
    await conn.execute(
        update(exceptions)
        .where(exceptions.c.item_id == item_id)
        .values(
            state="resolved",
            resolution_reason=reason,
            resolved_by=actor,
            resolved_at=func.now(),
            version=exceptions.c.version + 1,
            updated_at=func.now(),
        )
    )


async def record_requery(conn: AsyncConnection, item_id: int, *, result: dict[str, Any]) -> None:
    await conn.execute(
        update(exceptions)
        .where(exceptions.c.item_id == item_id)
        .values(
            requery_count=exceptions.c.requery_count + 1,
            last_requery=result,
            last_requery_at=func.now(),
            version=exceptions.c.version + 1,
            updated_at=func.now(),
        )
    )


async def add_action(conn: AsyncConnection, item_id: int, *, action: str, actor: str, detail: dict[str, Any]) -> None:
    await conn.execute(insert(actions).values(item_id=item_id, action=action, actor=actor, detail=detail))


async def list_actions(conn: AsyncConnection, item_id: int, *, limit: int) -> list[RowMapping]:
    rows = await conn.execute(
        select(actions).where(actions.c.item_id == item_id).order_by(actions.c.action_id).limit(limit)
    )
    return list(rows.mappings())
