"""Channel routes: create, replace (compare-and-set on the version), read; each write audited and published
(`route.created`, `route.updated`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx
from libs.common.errors import Problem
from services.routing.domain import errors as e
from services.routing.domain.codec import route_from_dict, route_to_dict
from services.routing.domain.errors import raise_if_invalid
from services.routing.domain.model import Route
from services.routing.events.types import ROUTE_CREATED, ROUTE_UPDATED, TOPIC
from services.routing.store.audit import PAGE_SIZE_MAX, check_version, lock_config, write_audit
from services.routing.store.tables import channel_routes


def route_from_row(row: Any) -> Route:
    return route_from_dict(dict(row))


def _route_values(route: Route) -> dict[str, Any]:
    values = route_to_dict(route)
    del values["route_id"]
    return values


async def get_route(conn: AsyncConnection, route_id: str) -> Route:
    row = (await conn.execute(select(channel_routes).where(channel_routes.c.route_id == route_id))).mappings().first()
    if row is None:
        raise Problem(e.CHANNEL_ROUTE_NOT_FOUND, f"no channel route {route_id!r}")
    return route_from_row(row)


async def list_routes(conn: AsyncConnection, *, after: str | None = None, limit: int = PAGE_SIZE_MAX) -> list[Route]:
    query = select(channel_routes).order_by(channel_routes.c.route_id).limit(limit)
    if after:
        query = query.where(channel_routes.c.route_id > after)
    return [route_from_row(r) for r in (await conn.execute(query)).mappings().all()]


async def create_route(tx: Tx, route: Route, *, actor: str) -> Route:
    raise_if_invalid(e.CHANNEL_ROUTE_INVALID, route.validate())
    config_version = await lock_config(tx.conn)
    exists = await tx.conn.execute(select(channel_routes.c.route_id).where(channel_routes.c.route_id == route.route_id))
    if exists.first() is not None:
        raise Problem(e.CHANNEL_ROUTE_EXISTS, f"channel route {route.route_id!r} already exists")
    route = replace(route, version=1)
    await tx.conn.execute(insert(channel_routes).values(route_id=route.route_id, **_route_values(route)))
    after = route_to_dict(route)
    await write_audit(
        tx.conn,
        resource_type="channel_route",
        resource_id=route.route_id,
        action="created",
        actor=actor,
        version=1,
        config_version=config_version,
        before=None,
        after=after,
    )
    tx.publish(topic=TOPIC, type=ROUTE_CREATED, subject=route.route_id, data={"route": after, "actor": actor})
    return route


async def replace_route(tx: Tx, route: Route, *, expected_version: int | None, actor: str) -> Route:
    raise_if_invalid(e.CHANNEL_ROUTE_INVALID, route.validate())
    config_version = await lock_config(tx.conn)
    row = (
        (
            await tx.conn.execute(
                select(channel_routes).where(channel_routes.c.route_id == route.route_id).with_for_update()
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise Problem(e.CHANNEL_ROUTE_NOT_FOUND, f"no channel route {route.route_id!r}")
    old = route_from_row(row)
    check_version(f"channel route {route.route_id}", old.version, expected_version)
    new = replace(route, version=old.version + 1)
    values = _route_values(new)
    await tx.conn.execute(
        update(channel_routes)
        .where(and_(channel_routes.c.route_id == route.route_id, channel_routes.c.version == old.version))
        .values(**values, updated_at=datetime.now().astimezone())
    )
    before, after = route_to_dict(old), route_to_dict(new)
    await write_audit(
        tx.conn,
        resource_type="channel_route",
        resource_id=route.route_id,
        action="updated",
        actor=actor,
        version=new.version,
        config_version=config_version,
        before=before,
        after=after,
    )
    changed = sorted(k for k in after if k != "version" and after[k] != before[k])
    tx.publish(
        topic=TOPIC,
        type=ROUTE_UPDATED,
        subject=route.route_id,
        data={"route": after, "changed_fields": changed, "actor": actor},
    )
    return new


async def known_route_ids(conn: AsyncConnection) -> set[str]:
    """Every configured route id: what a rule may name (domain/rules.py validates against it)."""
    return set((await conn.execute(select(channel_routes.c.route_id))).scalars().all())
