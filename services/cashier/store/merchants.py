"""Merchants (webhook secret, default notify URL) and their channel configs: one per channel and mode, so a test
configuration (sandbox) and a live one (the real channel) of the same channel live side by side."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Row, and_, bindparam, func, literal, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.modes import Mode
from services.cashier.store.driver import DriverStatement
from services.cashier.store.tables import merchant_channels, merchants, payments


async def get_merchant(conn: AsyncConnection, merchant_id: str) -> Row[Any] | None:
    return (await conn.execute(select(merchants).where(merchants.c.merchant_id == merchant_id))).first()


async def ensure_merchant(conn: AsyncConnection, merchant_id: str, *, webhook_secret_sealed: bytes) -> Row[Any]:
    """The merchant row, created with its (sealed) webhook secret the first time it is named."""
    await conn.execute(
        insert(merchants)
        .values(merchant_id=merchant_id, webhook_secret_sealed=webhook_secret_sealed)
        .on_conflict_do_nothing(index_elements=[merchants.c.merchant_id])
    )
    row = await get_merchant(conn, merchant_id)
    assert row is not None
    return row


async def update_merchant(
    conn: AsyncConnection, merchant_id: str, *, webhook_secret_sealed: bytes | None, notify_url: str | None
) -> Row[Any] | None:
    values: dict[str, Any] = {"updated_at": func.now(), "notify_url": notify_url}
    if webhook_secret_sealed is not None:
        values["webhook_secret_sealed"] = webhook_secret_sealed
    result = await conn.execute(
        merchants.update().where(merchants.c.merchant_id == merchant_id).values(**values).returning(merchants)
    )
    return result.first()


async def upsert_channel(
    conn: AsyncConnection,
    *,
    merchant_id: str,
    channel: str,
    priority: int,
    enabled: bool,
    config: dict[str, Any],
    mode: Mode,
) -> Row[Any]:
    """The merchant's config of `channel` in `mode` (checked against its endpoints by domain/modes.py): a PUT in the
    other mode adds that mode's config beside it, never replaces it."""
    statement = insert(merchant_channels).values(
        merchant_id=merchant_id, channel=channel, priority=priority, enabled=enabled, config=config, mode=mode
    )
    upsert = statement.on_conflict_do_update(
        index_elements=[merchant_channels.c.merchant_id, merchant_channels.c.channel, merchant_channels.c.mode],
        set_={
            "priority": statement.excluded.priority,
            "enabled": statement.excluded.enabled,
            "config": statement.excluded.config,
            "version": merchant_channels.c.version + 1,
            "updated_at": func.now(),
        },
    ).returning(merchant_channels)
    return (await conn.execute(upsert)).one()


async def patch_channel(
    conn: AsyncConnection, *, merchant_id: str, channel: str, mode: Mode, version: int, changes: dict[str, Any]
) -> Row[Any] | None:
    """`changes` (enabled, priority) on the config at `version` only, its config (secrets) untouched; None when no
    config of that mode is at that version (absent, or changed meanwhile: the caller tells which)."""
    c = merchant_channels.c
    statement = (
        merchant_channels.update()
        .where(c.merchant_id == merchant_id, c.channel == channel, c.mode == mode, c.version == version)
        .values(**changes, version=c.version + 1, updated_at=func.now())
        .returning(merchant_channels)
    )
    return (await conn.execute(statement)).first()


async def channel_configs(conn: AsyncConnection, merchant_id: str, channel: str) -> Sequence[Row[Any]]:
    """The merchant's configs of `channel`: none, one, or a test and a live one (live first)."""
    query = select(merchant_channels).where(
        merchant_channels.c.merchant_id == merchant_id, merchant_channels.c.channel == channel
    )
    return (await conn.execute(query.order_by(merchant_channels.c.mode))).all()


_CHANNEL_ORDER = (merchant_channels.c.priority, merchant_channels.c.channel, merchant_channels.c.mode)
# A create's read of the configs it may use (every payment asks it): built once, so its cache key is memoized and
# its compiled form comes from the engine's cache (docs/performance.md, "Fifth pass").
_ENABLED_CHANNELS_OF_MODE = (
    select(merchant_channels)
    .where(
        merchant_channels.c.merchant_id == bindparam("merchant_id"),
        merchant_channels.c.mode == bindparam("mode"),
        merchant_channels.c.enabled.is_(True),
    )
    .order_by(*_CHANNEL_ORDER)
)


def _create_read_statement() -> Any:
    """One row per enabled config of the mode (one row of NULL config columns when there is none: the outer join on
    a one-row table), each carrying the id of the merchant's payment with this order number, if any."""
    existing = (
        select(payments.c.id)
        .where(
            payments.c.merchant_id == bindparam("merchant_id"),
            payments.c.merchant_order_no == bindparam("merchant_order_no"),
        )
        .scalar_subquery()
        .label("existing_payment_id")
    )
    one = select(literal(1).label("one")).subquery("one")
    enabled = and_(
        merchant_channels.c.merchant_id == bindparam("merchant_id"),
        merchant_channels.c.mode == bindparam("mode"),
        merchant_channels.c.enabled.is_(True),
    )
    return (
        select(existing, *merchant_channels.c)
        .select_from(one.outerjoin(merchant_channels, enabled))
        .order_by(*_CHANNEL_ORDER)
    )


# On asyncpg directly (store/driver.py): every create runs it.
_CREATE_READ = DriverStatement(_create_read_statement())


class ChannelConfig(NamedTuple):
    """A `merchant_channels` row as the create's read returns it (by attribute, as SQLAlchemy's rows are read)."""

    merchant_id: str
    channel: str
    priority: int
    enabled: bool
    config: dict[str, Any]
    mode: str
    version: int
    updated_at: datetime


assert ChannelConfig._fields == tuple(column.name for column in merchant_channels.c), "the table's columns changed"


async def read_for_create(
    conn: AsyncConnection, *, merchant_id: str, merchant_order_no: str, mode: Mode
) -> tuple[str | None, list[ChannelConfig]]:
    """A create's one read, in one statement: the id of the merchant's payment with this order number (None: the
    order is new) and the merchant's enabled configs of the payment's mode, as `list_channels` orders them. Both come
    from one snapshot."""
    parameters = {"merchant_id": merchant_id, "merchant_order_no": merchant_order_no, "mode": mode}
    rows = await _CREATE_READ.fetch(conn, parameters)
    existing_payment_id = rows[0]["existing_payment_id"] if rows else None
    configs = [
        ChannelConfig(*(row[name] for name in ChannelConfig._fields)) for row in rows if row["channel"] is not None
    ]
    return existing_payment_id, configs


async def list_channels(
    conn: AsyncConnection, merchant_id: str, *, enabled_only: bool, mode: Mode | None = None
) -> Sequence[Row[Any]]:
    """The merchant's configs in priority order; with `mode`, only those a payment of that mode may use."""
    if enabled_only and mode is not None:
        return (await conn.execute(_ENABLED_CHANNELS_OF_MODE, {"merchant_id": merchant_id, "mode": mode})).all()
    query = select(merchant_channels).where(merchant_channels.c.merchant_id == merchant_id)
    if mode is not None:
        query = query.where(merchant_channels.c.mode == mode)
    if enabled_only:
        query = query.where(merchant_channels.c.enabled.is_(True))
    return (await conn.execute(query.order_by(*_CHANNEL_ORDER))).all()


async def set_checkout_origins(conn: AsyncConnection, merchant_id: str, origins: list[str]) -> Row[Any] | None:
    """Replace the origins allowed to frame the merchant's hosted checkout (juhe.js)."""
    result = await conn.execute(
        merchants.update()
        .where(merchants.c.merchant_id == merchant_id)
        .values(checkout_origins=origins, updated_at=func.now())
        .returning(merchants)
    )
    return result.first()
