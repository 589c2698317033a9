"""Routing rules: create, replace, delete (compare-and-set on the version), read; validated against the
configured routes and audited."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx
from libs.common.errors import Problem
from libs.common.ids import new_id
from services.routing.domain import errors as e
from services.routing.domain.errors import raise_if_invalid
from services.routing.domain.rules import (
    Rule,
    RuleDraft,
    RuleScope,
    action_from_dict,
    conditions_from_dict,
    rule_to_dict,
    validate_rule,
)
from services.routing.store.audit import check_version, lock_config, write_audit
from services.routing.store.channel_routes import known_route_ids
from services.routing.store.tables import routing_rules


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
    """The row's columns besides its key: the rule's dict form (domain/rules.py) without `rule_id`."""
    values = rule_to_dict(rule)
    del values["rule_id"]
    return values


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
    raise_if_invalid(e.RULE_INVALID, validate_rule(rule, await known_route_ids(tx.conn)))
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
    check_version(f"rule {rule_id}", old.version, expected_version)
    new = draft.to_rule(rule_id, old.version + 1)
    raise_if_invalid(e.RULE_INVALID, validate_rule(new, await known_route_ids(tx.conn)))
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
    check_version(f"rule {rule_id}", old.version, expected_version)
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
