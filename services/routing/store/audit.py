"""The steps every configuration write shares, and the audit trail.

Every write runs inside the caller's unit of work and, in that same transaction:
  1. locks the `routing_config` row and bumps `config_version` (a total order of configuration
     changes, and the key every decider's cache checks),
  2. validates with the domain (against the configuration as of that lock),
  3. writes the row with `version + 1` (compare-and-set on the version the admin last saw),
  4. appends a `config_audit` row: who, when, before, after,
  5. publishes a `routing.channels` event when routes or their prices change.

One module per resource does its writes this way: channel_routes.py, fee_rates.py, contracts.py, rules.py,
settings.py (special_rates.py audits its own writes too).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.errors import Problem
from libs.common.ids import new_id
from services.routing.domain import errors as e
from services.routing.store.tables import config_audit, routing_config

# The default size of a configuration list read (the API always passes its own `limit`).
PAGE_SIZE_MAX = 200


async def lock_config(conn: AsyncConnection) -> int:
    """Serialise configuration writers and return the new config_version for this change."""
    row = (
        await conn.execute(
            update(routing_config)
            .where(routing_config.c.id == 1)
            .values(config_version=routing_config.c.config_version + 1, updated_at=datetime.now().astimezone())
            .returning(routing_config.c.config_version)
        )
    ).one()
    return int(row.config_version)


async def current_config_version(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(routing_config.c.config_version))).scalar_one())


async def write_audit(
    conn: AsyncConnection,
    *,
    resource_type: str,
    resource_id: str,
    action: str,
    actor: str,
    version: int,
    config_version: int,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    await conn.execute(
        insert(config_audit).values(
            audit_id=new_id("aud"),
            resource_type=resource_type,
            resource_id=resource_id,
            action=action,
            actor=actor,
            version=version,
            config_version=config_version,
            before=before,
            after=after,
        )
    )


def check_version(spec_label: str, current: int, expected: int | None) -> None:
    if expected is not None and expected != current:
        raise Problem(
            e.VERSION_CONFLICT,
            f"{spec_label} is at version {current}, the change was based on version {expected}",
            current_version=current,
        )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    audit_id: str
    resource_type: str
    resource_id: str
    action: str
    actor: str
    at: datetime
    version: int
    config_version: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None


async def list_audit(
    conn: AsyncConnection, *, resource_type: str | None, resource_id: str | None, after: str | None, limit: int
) -> list[AuditEntry]:
    query = select(config_audit).order_by(config_audit.c.audit_id).limit(limit)
    if resource_type:
        query = query.where(config_audit.c.resource_type == resource_type)
    if resource_id:
        query = query.where(config_audit.c.resource_id == resource_id)
    if after:
        query = query.where(config_audit.c.audit_id > after)
    rows = (await conn.execute(query)).mappings().all()
    return [AuditEntry(**dict(row)) for row in rows]
