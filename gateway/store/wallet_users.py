"""Queries of My Wallet's sign-in links and payment PINs (gateway database)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import RowMapping, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.store.tables import payment_pins, user_tokens, wallet_sign_in_links


async def insert_sign_in_link(
    conn: AsyncConnection, *, link_id: str, secret_hash: bytes, user_id: str, platform_id: str, expires_at: datetime
) -> None:
    await conn.execute(
        insert(wallet_sign_in_links).values(
            link_id=link_id, secret_hash=secret_hash, user_id=user_id, platform_id=platform_id, expires_at=expires_at
        )
    )


async def get_sign_in_link(conn: AsyncConnection, link_id: str) -> RowMapping | None:
    stmt = select(wallet_sign_in_links).where(wallet_sign_in_links.c.link_id == link_id)
    return (await conn.execute(stmt)).mappings().first()


async def use_sign_in_link(conn: AsyncConnection, link_id: str) -> RowMapping | None:
    """Compare-and-set: the link is used once, only while unexpired (database clock); None if not."""
    stmt = (
        update(wallet_sign_in_links)
        .where(
            wallet_sign_in_links.c.link_id == link_id,
            wallet_sign_in_links.c.used_at.is_(None),
            wallet_sign_in_links.c.expires_at > func.clock_timestamp(),
        )
        .values(used_at=func.clock_timestamp())
        .returning(wallet_sign_in_links.c.user_id, wallet_sign_in_links.c.platform_id)
    )
    return (await conn.execute(stmt)).mappings().first()


async def lock_pin(conn: AsyncConnection, user_id: str) -> RowMapping | None:
    """The PIN row, locked for the rest of the transaction: wrong tries of one user are counted one at a time."""
    stmt = select(payment_pins).where(payment_pins.c.user_id == user_id).with_for_update()
    return (await conn.execute(stmt)).mappings().first()


async def get_pin(conn: AsyncConnection, user_id: str) -> RowMapping | None:
    return (await conn.execute(select(payment_pins).where(payment_pins.c.user_id == user_id))).mappings().first()


async def insert_pin(conn: AsyncConnection, *, user_id: str, platform_id: str, pin_hash: str) -> bool:
    """False when a PIN already exists (a concurrent first set lost the race)."""
    stmt = (
        pg_insert(payment_pins)
        .values(user_id=user_id, platform_id=platform_id, pin_hash=pin_hash)
        .on_conflict_do_nothing(index_elements=[payment_pins.c.user_id])
        .returning(payment_pins.c.user_id)
    )
    return (await conn.execute(stmt)).first() is not None


async def record_pin_tries(
    conn: AsyncConnection,
    *,
    user_id: str,
    failed_count: int,
    locked_until: datetime | None,
    pin_hash: str | None = None,
) -> None:
    values: dict[str, object] = {
        "failed_count": failed_count,
        "locked_until": locked_until,
        "updated_at": func.clock_timestamp(),
    }
    if pin_hash is not None:
        values["pin_hash"] = pin_hash
    await conn.execute(update(payment_pins).where(payment_pins.c.user_id == user_id).values(**values))


async def revoke_user_token(conn: AsyncConnection, token_id: str) -> None:
    stmt = (
        update(user_tokens)
        .where(user_tokens.c.token_id == token_id, user_tokens.c.revoked_at.is_(None))
        .values(revoked_at=func.clock_timestamp())
    )
    await conn.execute(stmt)
