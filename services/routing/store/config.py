"""Configuration writes and reads: routes, fee rates, contracts, rules, settings.

Every write runs inside the caller's unit of work and, in that same transaction:
  1. locks the `routing_config` row and bumps `config_version` (a total order of configuration
     changes, and the key every decider's cache checks),
  2. validates with the domain (against the configuration as of that lock),
  3. writes the row with `version + 1` (compare-and-set on the version the admin last saw),
  4. appends a `config_audit` row: who, when, before, after,
  5. publishes a `routing.channels` event when routes or their prices change.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx
from libs.common.errors import Problem
from libs.common.ids import new_id
from services.routing.domain import errors as e
from services.routing.domain.codec import (
    contract_to_dict,
    fee_rate_to_dict,
    route_from_dict,
    route_to_dict,
    settings_from_dict,
    settings_to_dict,
)
from services.routing.domain.decide import RoutingSettings
from services.routing.domain.errors import FieldError, raise_if_invalid
from services.routing.domain.fees import FeeRate, find_overlap
from services.routing.domain.model import Contract, Route
from services.routing.domain.rules import (
    Rule,
    RuleDraft,
    RuleScope,
    action_from_dict,
    action_to_dict,
    conditions_from_dict,
    conditions_to_dict,
    rule_to_dict,
    validate_rule,
)
from services.routing.events.types import (
    FEE_RATE_CREATED,
    FEE_RATE_EXPIRED,
    ROUTE_CREATED,
    ROUTE_UPDATED,
    TOPIC,
)
from services.routing.store.tables import (
    channel_routes,
    config_audit,
    fee_rates,
    merchant_contracts,
    routing_config,
    routing_rules,
)

PAGE_SIZE_MAX = 200


# --- shared ---------------------------------------------------------------------------------------


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


def _check_version(spec_label: str, current: int, expected: int | None) -> None:
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


# --- channel routes -------------------------------------------------------------------------------


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
    _check_version(f"channel route {route.route_id}", old.version, expected_version)
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


# --- fee rates ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredFeeRate:
    rate: FeeRate
    version: int
    created_at: datetime


def _fee_rate_from_row(row: Any) -> StoredFeeRate:
    rate = FeeRate(
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
    return StoredFeeRate(rate, row["version"], row["created_at"])


async def get_fee_rate(conn: AsyncConnection, rate_id: str, *, for_update: bool = False) -> StoredFeeRate:
    query = select(fee_rates).where(fee_rates.c.rate_id == rate_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise Problem(e.FEE_RATE_NOT_FOUND, f"no fee rate {rate_id!r}")
    return _fee_rate_from_row(row)


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
    return [_fee_rate_from_row(r) for r in (await conn.execute(query)).mappings().all()]


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
    return [_fee_rate_from_row(r).rate for r in rows]


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
    _check_version(f"fee rate {rate_id}", stored.version, expected_version)
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


# --- merchant contracts ---------------------------------------------------------------------------


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
        _check_version(f"contract {contract.merchant_id}/{contract.route_id}", old.version, expected_version)
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


# --- rules ----------------------------------------------------------------------------------------


def rule_from_row(row: Any) -> Rule:
    return Rule(
        rule_id=row["rule_id"],
        name=row["name"],
        scope=RuleScope(row["scope"]),
        priority=row["priority"],
        conditions=conditions_from_dict(row["conditions"]),
        action=action_from_dict(row["action"]),
        merchant_id=row["merchant_id"],
        enabled=row["enabled"],
        version=row["version"],
    )


def _rule_values(rule: Rule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "scope": rule.scope.value,
        "merchant_id": rule.merchant_id,
        "priority": rule.priority,
        "enabled": rule.enabled,
        "conditions": conditions_to_dict(rule.conditions),
        "action": action_to_dict(rule.action),
        "version": rule.version,
    }


async def _known_route_ids(conn: AsyncConnection) -> set[str]:
    return set((await conn.execute(select(channel_routes.c.route_id))).scalars().all())


async def get_rule(conn: AsyncConnection, rule_id: str, *, for_update: bool = False) -> Rule:
    query = select(routing_rules).where(routing_rules.c.rule_id == rule_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise Problem(e.RULE_NOT_FOUND, f"no routing rule {rule_id!r}")
    return rule_from_row(row)


async def list_rules(
    conn: AsyncConnection, *, scope: str | None, merchant_id: str | None, after: str | None, limit: int
) -> list[Rule]:
    query = select(routing_rules).order_by(routing_rules.c.rule_id).limit(limit)
    if scope:
        query = query.where(routing_rules.c.scope == scope)
    if merchant_id:
        query = query.where(routing_rules.c.merchant_id == merchant_id)
    if after:
        query = query.where(routing_rules.c.rule_id > after)
    return [rule_from_row(r) for r in (await conn.execute(query)).mappings().all()]


async def create_rule(tx: Tx, draft: RuleDraft, *, actor: str) -> Rule:
    config_version = await lock_config(tx.conn)
    rule = draft.to_rule(new_id("rul"), 1)
    raise_if_invalid(e.RULE_INVALID, validate_rule(rule, await _known_route_ids(tx.conn)))
    await tx.conn.execute(insert(routing_rules).values(rule_id=rule.rule_id, **_rule_values(rule)))
    await write_audit(
        tx.conn,
        resource_type="rule",
        resource_id=rule.rule_id,
        action="created",
        actor=actor,
        version=1,
        config_version=config_version,
        before=None,
        after=rule_to_dict(rule),
    )
    return rule


async def replace_rule(tx: Tx, rule_id: str, draft: RuleDraft, *, expected_version: int | None, actor: str) -> Rule:
    config_version = await lock_config(tx.conn)
    old = await get_rule(tx.conn, rule_id, for_update=True)
    _check_version(f"rule {rule_id}", old.version, expected_version)
    new = draft.to_rule(rule_id, old.version + 1)
    raise_if_invalid(e.RULE_INVALID, validate_rule(new, await _known_route_ids(tx.conn)))
    await tx.conn.execute(
        update(routing_rules)
        .where(and_(routing_rules.c.rule_id == rule_id, routing_rules.c.version == old.version))
        .values(**_rule_values(new), updated_at=datetime.now().astimezone())
    )
    await write_audit(
        tx.conn,
        resource_type="rule",
        resource_id=rule_id,
        action="updated",
        actor=actor,
        version=new.version,
        config_version=config_version,
        before=rule_to_dict(old),
        after=rule_to_dict(new),
    )
    return new


async def delete_rule(tx: Tx, rule_id: str, *, expected_version: int | None, actor: str) -> None:
    config_version = await lock_config(tx.conn)
    old = await get_rule(tx.conn, rule_id, for_update=True)
    _check_version(f"rule {rule_id}", old.version, expected_version)
    await tx.conn.execute(delete(routing_rules).where(routing_rules.c.rule_id == rule_id))
    await write_audit(
        tx.conn,
        resource_type="rule",
        resource_id=rule_id,
        action="deleted",
        actor=actor,
        version=old.version + 1,
        config_version=config_version,
        before=rule_to_dict(old),
        after=None,
    )


# --- settings -------------------------------------------------------------------------------------


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
    _check_version("routing settings", old.version, expected_version)
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
