"""Withdrawal rows (SQLAlchemy Core on a given connection). Every status change is a compare-and-set."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from services.settlement.store.tables import withdrawals
from services.settlement.store.work_queue import WorkQueue

queue = WorkQueue(withdrawals, withdrawals.c.operation_id)


async def insert_requested(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    """One row per wallet operation: a repeated `withdrawal.requested` (another event id) is a no-op."""
    result = await conn.execute(
        insert(withdrawals).values(**values).on_conflict_do_nothing(index_elements=[withdrawals.c.operation_id])
    )
    return bool(result.rowcount)


async def get(conn: AsyncConnection, operation_id: str) -> RowMapping | None:
    return (
        (await conn.execute(select(withdrawals).where(withdrawals.c.operation_id == operation_id))).mappings().first()
    )


async def set_card(
    conn: AsyncConnection, operation_id: str, account_no: str, account_name: str | None, rail: str = "bank"
) -> None:
    """Where the withdrawal goes (read from the ledger's operation before the first submit)."""
    await conn.execute(
        update(withdrawals)
        .where(
            withdrawals.c.operation_id == operation_id,
            withdrawals.c.status == "pending",
            withdrawals.c.submitted_at.is_(None),
        )
        .values(account_no=account_no, account_name=account_name, rail=rail)
    )


async def mark_submitted(
    conn: AsyncConnection,
    operation_id: str,
    bank_ref: str | None,
    bank_status: str,
    now: datetime,
    next_poll_at: datetime,
    user_action: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        update(withdrawals)
        .where(
            withdrawals.c.operation_id == operation_id,
            withdrawals.c.status == "pending",
            withdrawals.c.submitted_at.is_(None),
        )
        .values(
            submitted_at=now,
            bank_ref=bank_ref,
            bank_status=bank_status,
            next_attempt_at=next_poll_at,
            user_action=user_action,
        )
    )


async def finish(
    conn: AsyncConnection,
    operation_id: str,
    *,
    status: str,
    bank_status: str | None,
    failure_code: str | None,
    ledger_outcome: str | None,
    now: datetime,
) -> bool:
    """pending → succeeded | failed, once."""
    result = await conn.execute(
        update(withdrawals)
        .where(withdrawals.c.operation_id == operation_id, withdrawals.c.status == "pending")
        .values(
            status=status,
            bank_status=bank_status,
            failure_code=failure_code,
            ledger_outcome=ledger_outcome,
            finished_at=now,
            last_error=None,
        )
    )
    return bool(result.rowcount)


async def list_withdrawals(
    conn: AsyncConnection, *, holder_id: str | None, status: str | None, before_id: str | None, limit: int
) -> list[RowMapping]:
    """Newest first (wallet operation ids are time-ordered), older than `before_id`."""
    query = select(withdrawals)
    if holder_id is not None:
        query = query.where(withdrawals.c.holder_id == holder_id)
    if status is not None:
        query = query.where(withdrawals.c.status == status)
    if before_id:
        query = query.where(withdrawals.c.operation_id < before_id)
    return list((await conn.execute(query.order_by(withdrawals.c.operation_id.desc()).limit(limit))).mappings())
