"""The routing settings (one row with `config_version`): read, replace (compare-and-set); audited."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx
from services.routing.domain import errors as e
from services.routing.domain.codec import settings_from_dict, settings_to_dict
from services.routing.domain.decide import RoutingSettings
from services.routing.domain.errors import raise_if_invalid
from services.routing.store.audit import check_version, lock_config, write_audit
from services.routing.store.tables import routing_config


@dataclass(frozen=True, slots=True)
class StoredSettings:
    settings: RoutingSettings
    version: int
    config_version: int


async def get_settings(conn: AsyncConnection) -> StoredSettings:
    row = (await conn.execute(select(routing_config))).mappings().one()
    return StoredSettings(settings_from_dict(row["settings"]), row["settings_version"], row["config_version"])


async def put_settings(
    tx: Tx, settings: RoutingSettings, *, expected_version: int | None, actor: str
) -> StoredSettings:
    raise_if_invalid(e.ROUTING_SETTINGS_INVALID, settings.validate())
    config_version = await lock_config(tx.conn)
    old = await get_settings(tx.conn)
    check_version("routing settings", old.version, expected_version)
    await tx.conn.execute(
        update(routing_config)
        .where(routing_config.c.id == 1)
        .values(settings=settings_to_dict(settings), settings_version=old.version + 1)
    )
    await write_audit(
        tx.conn,
        resource_type="settings",
        resource_id="routing",
        action="updated",
        actor=actor,
        version=old.version + 1,
        config_version=config_version,
        before=settings_to_dict(old.settings),
        after=settings_to_dict(settings),
    )
    return StoredSettings(settings, old.version + 1, config_version)
