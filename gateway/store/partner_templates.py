"""The platform's service-provider channel configurations for partner-mode onboarding (migration 0009).

One row per platform, channel and mode: the whole configuration sealed (AES-GCM, like the merchants' secrets), its
fingerprint (so storing the same configuration again changes nothing, not even the version) and its public part
(what may be shown: the ids and public keys, never a private key, API key or password).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    RowMapping,
    Table,
    Text,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.store.tables import metadata

partner_templates = Table(
    "partner_templates",
    metadata,
    Column("platform_id", Text, primary_key=True),
    Column("channel", Text, primary_key=True),
    Column("mode", Text, primary_key=True),
    Column("config_sealed", LargeBinary, nullable=False),
    Column("config_hash", LargeBinary, nullable=False),
    Column("public", JSONB, nullable=False),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("channel IN ('wechatpay', 'alipay')", name="partner_templates_channel_known"),
    CheckConstraint("mode IN ('test', 'live')", name="partner_templates_mode_known"),
)


async def put_template(
    conn: AsyncConnection,
    *,
    platform_id: str,
    channel: str,
    mode: str,
    config_sealed: bytes,
    config_hash: bytes,
    public: dict[str, Any],
) -> RowMapping:
    """Store the template; the same configuration again (same fingerprint) keeps the row and its version as they
    are, another one replaces it and bumps the version."""
    statement = insert(partner_templates).values(
        platform_id=platform_id,
        channel=channel,
        mode=mode,
        config_sealed=config_sealed,
        config_hash=config_hash,
        public=public,
    )
    changed = partner_templates.c.config_hash != statement.excluded.config_hash
    upsert = statement.on_conflict_do_update(
        index_elements=[partner_templates.c.platform_id, partner_templates.c.channel, partner_templates.c.mode],
        set_={
            "config_sealed": statement.excluded.config_sealed,
            "config_hash": statement.excluded.config_hash,
            "public": statement.excluded.public,
            "version": partner_templates.c.version + 1,
            "updated_at": func.now(),
        },
        where=changed,
    ).returning(partner_templates)
    row = (await conn.execute(upsert)).mappings().first()
    if row is not None:
        return row
    kept = await get_template(conn, platform_id=platform_id, channel=channel, mode=mode)
    assert kept is not None  # the conflict that skipped the update is this very row
    return kept


async def get_template(conn: AsyncConnection, *, platform_id: str, channel: str, mode: str) -> RowMapping | None:
    stmt = select(partner_templates).where(
        partner_templates.c.platform_id == platform_id,
        partner_templates.c.channel == channel,
        partner_templates.c.mode == mode,
    )
    return (await conn.execute(stmt)).mappings().first()


async def list_templates(conn: AsyncConnection, platform_id: str) -> list[RowMapping]:
    """Every template of the platform (at most channels × modes rows), by channel then mode."""
    stmt = (
        select(partner_templates)
        .where(partner_templates.c.platform_id == platform_id)
        .order_by(partner_templates.c.channel, partner_templates.c.mode)
    )
    return list((await conn.execute(stmt)).mappings().all())
