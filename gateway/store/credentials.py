"""Queries on identities: platforms, merchants, users, API keys, user tokens (SQLAlchemy Core)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.store.tables import api_keys, merchants, platforms, user_tokens, users


async def ensure_platform(conn: AsyncConnection, *, platform_id: str, name: str) -> None:
    await conn.execute(pg_insert(platforms).values(id=platform_id, name=name).on_conflict_do_nothing())


async def insert_merchant(
    conn: AsyncConnection, *, merchant_id: str, platform_id: str, name: str, webhook_secret_sealed: bytes
) -> bool:
    """False when the id is taken."""
    stmt = (
        pg_insert(merchants)
        .values(id=merchant_id, platform_id=platform_id, name=name, webhook_secret_sealed=webhook_secret_sealed)
        .on_conflict_do_nothing()
        .returning(merchants.c.id)
    )
    return (await conn.execute(stmt)).first() is not None


async def get_merchant(conn: AsyncConnection, merchant_id: str, *, platform_id: str | None = None) -> RowMapping | None:
    stmt = select(merchants).where(merchants.c.id == merchant_id)
    if platform_id is not None:
        stmt = stmt.where(merchants.c.platform_id == platform_id)
    return (await conn.execute(stmt)).mappings().first()


async def insert_user(conn: AsyncConnection, *, user_id: str, platform_id: str, name: str) -> bool:
    stmt = (
        pg_insert(users)
        .values(id=user_id, platform_id=platform_id, name=name)
        .on_conflict_do_nothing()
        .returning(users.c.id)
    )
    return (await conn.execute(stmt)).first() is not None


async def get_user(conn: AsyncConnection, user_id: str, *, platform_id: str | None = None) -> RowMapping | None:
    stmt = select(users).where(users.c.id == user_id)
    if platform_id is not None:
        stmt = stmt.where(users.c.platform_id == platform_id)
    return (await conn.execute(stmt)).mappings().first()


async def insert_api_key(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(insert(api_keys).values(**values))


async def get_api_key(conn: AsyncConnection, key_id: str) -> RowMapping | None:
    return (await conn.execute(select(api_keys).where(api_keys.c.key_id == key_id))).mappings().first()


async def list_api_keys(conn: AsyncConnection, *, owner_kind: str, owner_id: str) -> Sequence[RowMapping]:
    stmt = (
        select(api_keys)
        .where(api_keys.c.owner_kind == owner_kind, api_keys.c.owner_id == owner_id)
        .order_by(api_keys.c.key_id)
    )
    return (await conn.execute(stmt)).mappings().all()


async def revoke_api_key(conn: AsyncConnection, *, key_id: str, platform_id: str) -> RowMapping | None:
    """Revocation is immediate and final (a revoked key never comes back)."""
    stmt = (
        update(api_keys)
        .where(api_keys.c.key_id == key_id, api_keys.c.platform_id == platform_id)
        .values(status="revoked", revoked_at=func.coalesce(api_keys.c.revoked_at, func.now()))
        .returning(*api_keys.c)
    )
    return (await conn.execute(stmt)).mappings().first()


async def retire_api_key(
    conn: AsyncConnection, *, key_id: str, platform_id: str, expires_at: datetime, replaced_by: str
) -> RowMapping | None:
    """Rotation: the old key keeps working until `expires_at` (never extended), then stops."""
    stmt = (
        update(api_keys)
        .where(api_keys.c.key_id == key_id, api_keys.c.platform_id == platform_id, api_keys.c.status == "active")
        .values(
            expires_at=func.least(func.coalesce(api_keys.c.expires_at, expires_at), expires_at),
            replaced_by=replaced_by,
        )
        .returning(*api_keys.c)
    )
    return (await conn.execute(stmt)).mappings().first()


async def insert_user_token(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(insert(user_tokens).values(**values))


async def get_user_token(conn: AsyncConnection, token_id: str) -> RowMapping | None:
    return (await conn.execute(select(user_tokens).where(user_tokens.c.token_id == token_id))).mappings().first()
