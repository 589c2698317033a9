"""Payout rows (SQLAlchemy Core on a given connection). Every status change is a compare-and-set."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from services.settlement.store.tables import payouts
from services.settlement.store.work_queue import WorkQueue

queue = WorkQueue(payouts, payouts.c.payout_id)


async def insert_payout(conn: AsyncConnection, values: dict[str, Any]) -> tuple[RowMapping, bool]:
    """(row, created): an existing (holder, idempotency_key) returns the stored payout."""
    inserted = (
        (
            await conn.execute(
                insert(payouts)
                .values(**values)
                .on_conflict_do_nothing(constraint="payouts_holder_key")
                .returning(payouts)
            )
        )
        .mappings()
        .first()
    )
    if inserted is not None:
        return inserted, True
    existing = (
        (
            await conn.execute(
                select(payouts).where(
                    payouts.c.holder_id == values["holder_id"], payouts.c.idempotency_key == values["idempotency_key"]
                )
            )
        )
        .mappings()
        .one()
    )
    return existing, False


async def get_payout(conn: AsyncConnection, payout_id: str, holder_id: str | None = None) -> RowMapping | None:
    query = select(payouts).where(payouts.c.payout_id == payout_id)
    if holder_id is not None:
        query = query.where(payouts.c.holder_id == holder_id)
    return (await conn.execute(query)).mappings().first()


async def mark_instructed(conn: AsyncConnection, payout_id: str, transfer_id: str) -> None:
    await conn.execute(
        update(payouts)
        .where(
            payouts.c.payout_id == payout_id, payouts.c.status == "pending", payouts.c.instruction_transfer_id.is_(None)
        )
        .values(instruction_transfer_id=transfer_id)
    )


async def mark_submitted(
    conn: AsyncConnection,
    payout_id: str,
    bank_ref: str | None,
    bank_status: str,
    now: datetime,
    next_poll_at: datetime,
    user_action: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        update(payouts)
        .where(payouts.c.payout_id == payout_id, payouts.c.status == "pending", payouts.c.submitted_at.is_(None))
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
    payout_id: str,
    *,
    status: str,
    failure_code: str | None,
    outcome_transfer_id: str | None,
    bank_status: str | None,
    now: datetime,
) -> bool:
    """pending → succeeded | failed, once."""
    result = await conn.execute(
        update(payouts)
        .where(payouts.c.payout_id == payout_id, payouts.c.status == "pending")
        .values(
            status=status,
            failure_code=failure_code,
            outcome_transfer_id=outcome_transfer_id,
            bank_status=bank_status,
            finished_at=now,
        )
    )
    return bool(result.rowcount)


async def list_payouts(
    conn: AsyncConnection,
    *,
    holder_id: str | None,
    status: str | None,
    before_id: str | None,
    limit: int,
    livemode: bool | None = None,
) -> list[RowMapping]:
    """Payouts newest first (ids are time-ordered), older than `before_id`; by holder, status and mode if given."""
    query = select(payouts)
    if livemode is not None:
        query = query.where(payouts.c.livemode == livemode)
    if holder_id is not None:
        query = query.where(payouts.c.holder_id == holder_id)
    if status is not None:
        query = query.where(payouts.c.status == status)
    if before_id:
        query = query.where(payouts.c.payout_id < before_id)
    return list((await conn.execute(query.order_by(payouts.c.payout_id.desc()).limit(limit))).mappings())


async def decide(
    conn: AsyncConnection, payout_id: str, *, approve: bool, actor: str, reason: str | None, now: datetime
) -> RowMapping | None:
    """`pending_approval` → `pending` (approved: due now) or `rejected` (final, nothing moved), once: None when the
    payout was not waiting for approval (decided already, by someone else at the same moment, or never held)."""
    values: dict[str, Any] = {"decided_by": actor, "decided_at": now, "decision_reason": reason}
    if approve:
        values |= {"status": "pending", "next_attempt_at": now}
    else:
        values |= {"status": "rejected", "finished_at": now}
    statement = (
        payouts.update()
        .where(payouts.c.payout_id == payout_id, payouts.c.status == "pending_approval")
        .values(**values)
        .returning(payouts)
    )
    return (await conn.execute(statement)).mappings().first()
