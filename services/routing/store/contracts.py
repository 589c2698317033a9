"""Merchant contracts on a route: put (create or replace, compare-and-set on the version), read; audited."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx
from libs.common.errors import Problem
from services.routing.domain import errors as e
from services.routing.domain.codec import contract_to_dict
from services.routing.domain.errors import raise_if_invalid
from services.routing.domain.model import Contract
from services.routing.store.audit import check_version, lock_config, write_audit
from services.routing.store.channel_routes import get_route
from services.routing.store.tables import merchant_contracts


def _contract_from_row(row: Any) -> Contract:
    return Contract(
        merchant_id=row["merchant_id"],
        route_id=row["route_id"],
        sub_merchant_id=row["sub_merchant_id"],
        enabled=row["enabled"],
        industry=row["industry"],
        version=row["version"],
    )


async def get_contract(conn: AsyncConnection, merchant_id: str, route_id: str, *, for_update: bool = False) -> Contract:
    query = select(merchant_contracts).where(
        and_(merchant_contracts.c.merchant_id == merchant_id, merchant_contracts.c.route_id == route_id)
    )
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise Problem(e.CONTRACT_NOT_FOUND, f"merchant {merchant_id!r} has no contract on route {route_id!r}")
    return _contract_from_row(row)


async def list_contracts(
    conn: AsyncConnection, *, merchant_id: str | None, route_id: str | None, after: str | None, limit: int
) -> list[Contract]:
    """Ordered by (merchant_id, route_id); the cursor is 'merchant_id/route_id'."""
    query = (
        select(merchant_contracts)
        .order_by(merchant_contracts.c.merchant_id, merchant_contracts.c.route_id)
        .limit(limit)
    )
    if merchant_id:
        query = query.where(merchant_contracts.c.merchant_id == merchant_id)
    if route_id:
        query = query.where(merchant_contracts.c.route_id == route_id)
    if after:
        after_merchant, _, after_route = after.partition("/")
        query = query.where(
            (merchant_contracts.c.merchant_id > after_merchant)
            | and_(merchant_contracts.c.merchant_id == after_merchant, merchant_contracts.c.route_id > after_route)
        )
    return [_contract_from_row(r) for r in (await conn.execute(query)).mappings().all()]


async def put_contract(tx: Tx, contract: Contract, *, expected_version: int | None, actor: str) -> Contract:
    raise_if_invalid(e.CONTRACT_INVALID, contract.validate())
    config_version = await lock_config(tx.conn)
    await get_route(tx.conn, contract.route_id)
    try:
        old: Contract | None = await get_contract(tx.conn, contract.merchant_id, contract.route_id, for_update=True)
    except Problem:
        old = None
    if old is None:
        if expected_version not in (None, 0):
            raise Problem(e.VERSION_CONFLICT, "the contract does not exist yet (expected_version must be 0 or absent)")
        new = replace(contract, version=1)
        await tx.conn.execute(insert(merchant_contracts).values(**contract_to_dict(new)))
    else:
        check_version(f"contract {contract.merchant_id}/{contract.route_id}", old.version, expected_version)
        new = replace(contract, version=old.version + 1)
        values = contract_to_dict(new)
        await tx.conn.execute(
            update(merchant_contracts)
            .where(
                and_(
                    merchant_contracts.c.merchant_id == contract.merchant_id,
                    merchant_contracts.c.route_id == contract.route_id,
                    merchant_contracts.c.version == old.version,
                )
            )
            .values(**values, updated_at=datetime.now().astimezone())
        )
    await write_audit(
        tx.conn,
        resource_type="contract",
        resource_id=f"{contract.merchant_id}/{contract.route_id}",
        action="created" if old is None else "updated",
        actor=actor,
        version=new.version,
        config_version=config_version,
        before=None if old is None else contract_to_dict(old),
        after=contract_to_dict(new),
    )
    return new
