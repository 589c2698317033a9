"""The pending rows a worker drives to a final state (payouts, withdrawals, profit-sharing orders): claimed
with a lease so replicas share them, retried later with the error kept.

Each such table has `status`, `next_attempt_at`, `last_error` and `attempt_count`; a row is due while
`pending` and its `next_attempt_at` has passed. Claiming moves `next_attempt_at` to the lease's end, so a
worker that dies mid-step leaves the row due again once the lease runs out — never lost, never driven by
two workers at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Table, func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

ERROR_CHARS_MAX = 500


@dataclass(frozen=True, slots=True)
class WorkQueue:
    table: Table
    key: Column[Any]

    async def claim_due(
        self, conn: AsyncConnection, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[RowMapping]:
        """Lease up to `limit` due pending rows, oldest due first (SKIP LOCKED: replicas share them)."""
        c = self.table.c
        due = (
            select(self.key)
            .where(c.status == "pending", c.next_attempt_at <= now)
            .order_by(c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        rows = await conn.execute(
            update(self.table).where(self.key.in_(due)).values(next_attempt_at=lease_until).returning(self.table)
        )
        return list(rows.mappings())

    async def retry_later(self, conn: AsyncConnection, key: str, error: str, next_attempt_at: datetime) -> None:
        """A step that could not finish: keep the error, try again at `next_attempt_at` (still pending only)."""
        c = self.table.c
        await conn.execute(
            update(self.table)
            .where(self.key == key, c.status == "pending")
            .values(
                last_error=error[:ERROR_CHARS_MAX], next_attempt_at=next_attempt_at, attempt_count=c.attempt_count + 1
            )
        )

    # ---- payout rails (clients/rails.py): rows with a `rail` column (payouts, withdrawals)

    async def note_channel_status(self, conn: AsyncConnection, key: str, bank_status: str) -> None:
        """A still-pending answer of a channel rail (WAITING_USER, PROCESSING), for the row's readers."""
        c = self.table.c
        await conn.execute(
            update(self.table).where(self.key == key, c.status == "pending").values(bank_status=bank_status)
        )

    async def pending_by_transfer_no(self, conn: AsyncConnection, transfer_no: str) -> str | None:
        """The pending channel-rail row whose channel transfer number (rails.transfer_no of its key) is this."""
        c = self.table.c
        number = func.right(func.regexp_replace(self.key, "[^0-9A-Za-z]", "", "g"), 32)
        query = select(self.key).where(c.status == "pending", c.rail != "bank", number == transfer_no).limit(1)
        found = (await conn.execute(query)).scalar_one_or_none()
        return str(found) if found is not None else None
