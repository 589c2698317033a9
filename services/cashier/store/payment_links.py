"""The payment_links table (migration 0013) and the queries that count a link's uses.

A use is a checkout session of the link that is completed, or open and not past its deadline. Opening a new
session locks the link's row (`FOR UPDATE`) and counts in the same transaction as the session's insert, so two
payers cannot both take a link's last use.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    String,
    Table,
    Text,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.cashier.store.checkout import checkout_sessions
from services.cashier.store.tables import ID, metadata

payment_links = Table(
    "payment_links",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("merchant_id", String(64), nullable=False),
    Column("slug", String(64), nullable=False, unique=True),
    Column("status", String(16), nullable=False, server_default=text("'active'")),
    Column("amount_minor", BigInteger),  # null: the payer enters it, within the bounds
    Column("amount_min_minor", BigInteger, nullable=False),
    Column("amount_max_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("description", Text, nullable=False),
    Column("payer_fields", JSONB, nullable=False),
    Column("allowed_methods", JSONB),
    Column("return_url", Text),
    Column("max_uses", Integer),  # null: reusable without limit
    Column("expires_at", DateTime(timezone=True)),
    Column("metadata", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("deactivated_at", DateTime(timezone=True)),
    Column("livemode", Boolean, nullable=False),  # its sessions' mode (docs/test-mode.md, migration 0016)
)


async def insert_link(conn: AsyncConnection, values: dict[str, Any]) -> Row[Any]:
    row = (await conn.execute(payment_links.insert().values(**values).returning(payment_links))).first()
    assert row is not None
    return row


async def get_link(conn: AsyncConnection, *, merchant_id: str, link_id: str) -> Row[Any] | None:
    query = select(payment_links).where(payment_links.c.id == link_id, payment_links.c.merchant_id == merchant_id)
    return (await conn.execute(query)).first()


async def get_link_by_slug(conn: AsyncConnection, slug: str, *, for_update: bool = False) -> Row[Any] | None:
    query = select(payment_links).where(payment_links.c.slug == slug)
    return (await conn.execute(query.with_for_update() if for_update else query)).first()


async def list_links(
    conn: AsyncConnection, *, merchant_id: str, after: str | None, limit: int, livemode: bool | None = None
) -> list[Row[Any]]:
    """The merchant's links, newest first (ids are time-ordered); `after` is the last id of the previous page;
    `livemode` keeps one mode's links (None: both)."""
    query = select(payment_links).where(payment_links.c.merchant_id == merchant_id)
    if livemode is not None:
        query = query.where(payment_links.c.livemode.is_(livemode))
    if after is not None:
        query = query.where(payment_links.c.id < after)
    return list((await conn.execute(query.order_by(payment_links.c.id.desc()).limit(limit))).all())


async def deactivate_link(conn: AsyncConnection, *, merchant_id: str, link_id: str, now: datetime) -> None:
    await conn.execute(
        update(payment_links)
        .where(
            payment_links.c.id == link_id,
            payment_links.c.merchant_id == merchant_id,
            payment_links.c.status == "active",
        )
        .values(status="deactivated", deactivated_at=now)
    )


async def count_uses(
    conn: AsyncConnection, *, link_id: str, now: datetime, except_order_no: str | None = None
) -> tuple[int, int]:
    """(completed, open and not past the deadline) sessions of the link; `except_order_no` leaves one out (the
    session a repeated request is about to find again)."""
    counts = await count_uses_of(conn, [link_id], now=now, except_order_no=except_order_no)
    return counts.get(link_id, (0, 0))


async def count_uses_of(
    conn: AsyncConnection, link_ids: Sequence[str], *, now: datetime, except_order_no: str | None = None
) -> dict[str, tuple[int, int]]:
    """`count_uses` of several links in one query (a page of the merchant's list); a link without uses is absent."""
    if not link_ids:
        return {}
    s = checkout_sessions.c
    live = (s.status == "open") & (s.expires_at > now)
    query = (
        select(s.payment_link_id, func.count().filter(s.status == "completed"), func.count().filter(live))
        .where(s.payment_link_id.in_(link_ids), (s.status == "completed") | live)
        .group_by(s.payment_link_id)
    )
    if except_order_no is not None:
        query = query.where(s.merchant_order_no != except_order_no)
    return {link_id: (int(completed), int(open_)) for link_id, completed, open_ in (await conn.execute(query)).all()}
