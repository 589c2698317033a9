"""Account queries of the ledger store (opening, reading, listing, status changes)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx
from services.ledger.domain.accounts import Account
from services.ledger.events import ACCOUNT_OPENED, ACCOUNTS_TOPIC
from services.ledger.events.accounts import AccountResponse
from services.ledger.store.codec import account_from_row
from services.ledger.store.tables import accounts


async def insert_account(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping:
    return (await conn.execute(insert(accounts).values(**values).returning(*accounts.c))).mappings().one()


async def open_account(
    tx: Tx, account: Account, idempotency_key: str | None, body_hash: str
) -> tuple[RowMapping | None, bool]:
    """Inserts the account and publishes account.opened in the same transaction; `(row, True)` when created,
    `(original, False)` for a repeat of the same idempotency key and body, `(None, False)` when the key was used
    for another body. Every opener goes through here (flows/accounts.py, the wallet), so an account is opened
    and announced one way."""
    values: dict[str, Any] = {
        "id": account.id,
        "holder_id": account.holder_id,
        "currency": account.currency,
        "kind": account.kind,
        "code": account.code,
        "normal_balance": account.normal_balance.value,
        "metadata": account.metadata,
        "debits_must_not_exceed_credits": account.flags.debits_must_not_exceed_credits,
        "credits_must_not_exceed_debits": account.flags.credits_must_not_exceed_debits,
        "credit_limit_minor": account.credit_limit_minor,
        "idempotency_key": idempotency_key,
        "body_hash": body_hash,
        "livemode": account.livemode,
    }
    row = await (insert_account if idempotency_key is None else insert_account_once)(tx.conn, values)
    if row is not None:
        data = AccountResponse.of(account_from_row(row), row["created_at"]).model_dump(mode="json")
        tx.publish(topic=ACCOUNTS_TOPIC, type=ACCOUNT_OPENED, subject=str(row["id"]), data=data)
        return row, True
    assert idempotency_key is not None
    existing = await get_account_by_key(tx.conn, idempotency_key, livemode=account.livemode)
    assert existing is not None  # the conflicting row is committed (ON CONFLICT waited for it)
    return (existing, False) if existing["body_hash"] == body_hash else (None, False)


async def insert_account_once(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping | None:
    """Insert keyed by `idempotency_key` within the account's book (`livemode`, live when left out); None when the
    key exists in that book (the caller reads and compares)."""
    statement = (
        pg_insert(accounts)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[accounts.c.idempotency_key, accounts.c.livemode])
        .returning(*accounts.c)
    )
    return (await conn.execute(statement)).mappings().first()


async def get_account_by_key(
    conn: AsyncConnection, idempotency_key: str, *, livemode: bool = True
) -> RowMapping | None:
    """The account opened under `idempotency_key` in one book (the same chart key names one account per book)."""
    statement = select(accounts).where(accounts.c.idempotency_key == idempotency_key, accounts.c.livemode == livemode)
    return (await conn.execute(statement)).mappings().first()


async def get_account(conn: AsyncConnection, account_id: str, *, for_update: bool = False) -> RowMapping | None:
    statement = select(accounts).where(accounts.c.id == account_id)
    if for_update:
        statement = statement.with_for_update()
    return (await conn.execute(statement)).mappings().first()


async def list_accounts(
    conn: AsyncConnection, *, holder_id: str, after_id: str | None, limit: int, livemode: bool | None = None
) -> list[RowMapping]:
    """One page of a holder's accounts, ordered by id (ids are time-sortable UUIDv7); one book, or both (None)."""
    condition = accounts.c.holder_id == holder_id
    if livemode is not None:
        condition = and_(condition, accounts.c.livemode == livemode)
    if after_id:
        condition = and_(condition, accounts.c.id > after_id)
    statement = select(accounts).where(condition).order_by(accounts.c.id).limit(limit)
    return list((await conn.execute(statement)).mappings().all())


async def set_account_status(conn: AsyncConnection, account_id: str, *, old: str, new: str) -> RowMapping | None:
    """Compare-and-set on the status: None if somebody changed it first."""
    statement = (
        update(accounts)
        .where(accounts.c.id == account_id, accounts.c.status == old)
        .values(status=new)
        .returning(*accounts.c)
    )
    return (await conn.execute(statement)).mappings().first()
