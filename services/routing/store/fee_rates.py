"""Fee rates: create (no overlap in force for the same key), expire (never into the past), read; each write
audited and published (`fee_rate.created`, `fee_rate.expired`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx
from libs.common.errors import Problem
from services.routing.domain import errors as e
from services.routing.domain.codec import fee_rate_to_dict
from services.routing.domain.errors import FieldError, raise_if_invalid
from services.routing.domain.fees import FeeRate, find_overlap
from services.routing.events.types import FEE_RATE_CREATED, FEE_RATE_EXPIRED, TOPIC
from services.routing.store.audit import PAGE_SIZE_MAX, check_version, lock_config, write_audit
from services.routing.store.channel_routes import get_route
from services.routing.store.tables import fee_rates


@dataclass(frozen=True, slots=True)
class StoredFeeRate:
    rate: FeeRate
    version: int
    created_at: datetime


def fee_rate_from_row(row: Any) -> FeeRate:
    return FeeRate(
        rate_id=row["rate_id"],
        route_id=row["route_id"],
        rate_bps=row["rate_bps"],
        valid_from=row["valid_from"],
        valid_until=row["valid_until"],
        min_fee_minor=row["min_fee_minor"],
        max_fee_minor=row["max_fee_minor"],
        fixed_fee_minor=row["fixed_fee_minor"],
        industry=row["industry"],
        merchant_id=row["merchant_id"],
    )


def _stored_fee_rate_from_row(row: Any) -> StoredFeeRate:
    return StoredFeeRate(fee_rate_from_row(row), row["version"], row["created_at"])


async def get_fee_rate(conn: AsyncConnection, rate_id: str, *, for_update: bool = False) -> StoredFeeRate:
    query = select(fee_rates).where(fee_rates.c.rate_id == rate_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise Problem(e.FEE_RATE_NOT_FOUND, f"no fee rate {rate_id!r}")
    return _stored_fee_rate_from_row(row)


async def list_fee_rates(
    conn: AsyncConnection,
    *,
    route_id: str | None = None,
    merchant_id: str | None = None,
    after: str | None = None,
    limit: int = PAGE_SIZE_MAX,
) -> list[StoredFeeRate]:
    query = select(fee_rates).order_by(fee_rates.c.rate_id).limit(limit)
    if route_id:
        query = query.where(fee_rates.c.route_id == route_id)
    if merchant_id:
        query = query.where(fee_rates.c.merchant_id == merchant_id)
    if after:
        query = query.where(fee_rates.c.rate_id > after)
    return [_stored_fee_rate_from_row(r) for r in (await conn.execute(query)).mappings().all()]


async def _raise_on_overlap(conn: AsyncConnection, rate: FeeRate) -> None:
    same_route = await list_fee_rates_all(conn, route_id=rate.route_id)
    clash = find_overlap(same_route, rate)
    if clash is not None:
        until = clash.valid_until.isoformat() if clash.valid_until else "further notice"
        raise Problem(
            e.FEE_RATE_OVERLAP,
            f"fee rate {clash.rate_id} for the same route, merchant and industry is in force from "
            f"{clash.valid_from.isoformat()} until {until}",
            conflicting_rate_id=clash.rate_id,
        )


async def list_fee_rates_all(conn: AsyncConnection, *, route_id: str) -> list[FeeRate]:
    rows = (await conn.execute(select(fee_rates).where(fee_rates.c.route_id == route_id))).mappings().all()
    return [fee_rate_from_row(r) for r in rows]


async def create_fee_rate(tx: Tx, rate: FeeRate, *, actor: str) -> StoredFeeRate:
    raise_if_invalid(e.FEE_RATE_INVALID, rate.validate())
    config_version = await lock_config(tx.conn)
    await get_route(tx.conn, rate.route_id)
    await _raise_on_overlap(tx.conn, rate)
    values = fee_rate_to_dict(rate)
    values["valid_from"], values["valid_until"] = rate.valid_from, rate.valid_until
    try:
        async with tx.conn.begin_nested():
            await tx.conn.execute(insert(fee_rates).values(**values))
    except IntegrityError as exc:  # the exclusion constraint: a concurrent writer got there first
        raise Problem(e.FEE_RATE_OVERLAP, "another fee rate for the same key overlaps this period") from exc
    after = fee_rate_to_dict(rate)
    await write_audit(
        tx.conn,
        resource_type="fee_rate",
        resource_id=rate.rate_id,
        action="created",
        actor=actor,
        version=1,
        config_version=config_version,
        before=None,
        after=after,
    )
    tx.publish(topic=TOPIC, type=FEE_RATE_CREATED, subject=rate.route_id, data={"fee_rate": after, "actor": actor})
    return await get_fee_rate(tx.conn, rate.rate_id)


async def expire_fee_rate(
    tx: Tx, rate_id: str, *, valid_until: datetime, expected_version: int | None, actor: str, now: datetime
) -> StoredFeeRate:
    """End a rate at `valid_until` (not before now: the rate used by past payments stays on record)."""
    config_version = await lock_config(tx.conn)
    stored = await get_fee_rate(tx.conn, rate_id, for_update=True)
    check_version(f"fee rate {rate_id}", stored.version, expected_version)
    problems: list[FieldError] = []
    if valid_until.tzinfo is None:
        problems.append(FieldError("valid_until", "must carry a timezone offset"))
    elif valid_until < now:
        problems.append(FieldError("valid_until", "cannot end a rate in the past: past payments used it"))
    elif valid_until <= stored.rate.valid_from:
        problems.append(FieldError("valid_until", "must be after valid_from"))
    raise_if_invalid(e.FEE_RATE_INVALID, problems)
    new = replace(stored.rate, valid_until=valid_until)
    await _raise_on_overlap(tx.conn, new)
    await tx.conn.execute(
        update(fee_rates)
        .where(and_(fee_rates.c.rate_id == rate_id, fee_rates.c.version == stored.version))
        .values(valid_until=valid_until, version=stored.version + 1)
    )
    before = fee_rate_to_dict(stored.rate, version=stored.version)
    after = fee_rate_to_dict(new, version=stored.version + 1)
    await write_audit(
        tx.conn,
        resource_type="fee_rate",
        resource_id=rate_id,
        action="expired",
        actor=actor,
        version=stored.version + 1,
        config_version=config_version,
        before=before,
        after=after,
    )
    tx.publish(topic=TOPIC, type=FEE_RATE_EXPIRED, subject=new.route_id, data={"fee_rate": after, "actor": actor})
    return StoredFeeRate(new, stored.version + 1, stored.created_at)
