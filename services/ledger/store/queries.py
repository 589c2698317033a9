"""Read side of the ledger: transfers, balances as of a time, statements with cursor pagination."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ledger.domain.transfers import Transfer
from services.ledger.store.codec import TRANSFER_COLUMNS, transfer_from_row


async def get_transfer(conn: AsyncConnection, transfer_id: str) -> Transfer | None:
    row = (
        (await conn.execute(text(f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = :id"), {"id": transfer_id}))
        .mappings()
        .first()
    )
    return transfer_from_row(row) if row else None


async def get_transfer_by_key(conn: AsyncConnection, source: str, idempotency_key: str) -> Transfer | None:
    row = (
        (
            await conn.execute(
                text(f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE source = :source AND idempotency_key = :key"),
                {"source": source, "key": idempotency_key},
            )
        )
        .mappings()
        .first()
    )
    return transfer_from_row(row) if row else None


async def get_transfers(conn: AsyncConnection, transfer_ids: list[str]) -> dict[str, Transfer]:
    if not transfer_ids:
        return {}
    rows = (
        (
            await conn.execute(
                text(f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ANY(:ids)"), {"ids": transfer_ids}
            )
        )
        .mappings()
        .all()
    )
    return {r["id"]: transfer_from_row(r) for r in rows}


async def counters_as_of(conn: AsyncConnection, account_id: str, as_of: datetime) -> tuple[int, int, int, int]:
    """The four counters right after the last entry at or before `as_of` (zeros before the first entry).

    Entries of one account are written under that account's row lock with the database clock read after
    the lock, so their ids and times grow together and "the last entry before t" is well defined.
    """
    row = (
        (
            await conn.execute(
                text(
                    """
                    SELECT debits_posted, credits_posted, debits_pending, credits_pending FROM entries
                     WHERE account_id = :account_id AND created_at <= :as_of
                     ORDER BY created_at DESC, id DESC LIMIT 1
                    """
                ),
                {"account_id": account_id, "as_of": as_of},
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return (0, 0, 0, 0)
    return (row["debits_posted"], row["credits_posted"], row["debits_pending"], row["credits_pending"])


async def statement_page(
    conn: AsyncConnection,
    account_id: str,
    *,
    after: tuple[datetime, int] | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[RowMapping]:
    """Entries of one account in order, `limit` per page; the cursor is the last (created_at, id) seen.

    Per account, entry ids and times grow together (written under the account's row lock), so ordering
    by `(created_at, id)` is the same as by id and uses the `(account_id, created_at, id)` index.
    """
    conditions = ["e.account_id = :account_id"]
    params: dict[str, Any] = {"account_id": account_id, "limit": limit}
    if after is not None:
        conditions.append("(e.created_at, e.id) > (:after_at, :after_id)")
        params["after_at"], params["after_id"] = after
    if since is not None:
        conditions.append("e.created_at >= :since")
        params["since"] = since
    if until is not None:
        conditions.append("e.created_at < :until")
        params["until"] = until
    sql = f"""
        SELECT e.id, e.transfer_id, e.kind, e.direction, e.posted_delta_minor, e.pending_delta_minor,
               e.currency, e.debits_posted, e.credits_posted, e.debits_pending, e.credits_pending,
               e.created_at, t.reference
          FROM entries e JOIN transfers t ON t.id = e.transfer_id
         WHERE {" AND ".join(conditions)}
         ORDER BY e.created_at, e.id LIMIT :limit
    """
    return list((await conn.execute(text(sql), params)).mappings().all())
