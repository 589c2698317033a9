"""Admin API for routing rules (/v1/rules): validated on write, versioned, audited."""

from __future__ import annotations

from fastapi import APIRouter, Response

from libs.common.paging import PageLimit
from libs.common.web import UowDep
from services.routing.api.deps import ActorDep
from services.routing.api.schemas import (
    AuditEntryResponse,
    AuditListResponse,
    RuleListResponse,
    RuleResponse,
    RuleWriteRequest,
)
from services.routing.store import config as store

router = APIRouter(prefix="/v1/rules", tags=["rules"])


@router.post("", status_code=201)
async def create_rule(body: RuleWriteRequest, uow: UowDep, actor: ActorDep) -> RuleResponse:
    async with uow.begin() as tx:
        rule = await store.create_rule(tx, body.to_draft(), actor=actor)
    return RuleResponse.of(rule)


@router.get("")
async def list_rules(
    uow: UowDep,
    limit: PageLimit,
    scope: str | None = None,
    merchant_id: str | None = None,
    after: str | None = None,
) -> RuleListResponse:
    async with uow.read() as conn:
        rules = await store.list_rules(conn, scope=scope, merchant_id=merchant_id, after=after, limit=limit)
    cursor = rules[-1].rule_id if len(rules) == limit else None
    return RuleListResponse(items=[RuleResponse.of(r) for r in rules], next_cursor=cursor)


@router.get("/{rule_id}")
async def get_rule(rule_id: str, uow: UowDep) -> RuleResponse:
    async with uow.read() as conn:
        return RuleResponse.of(await store.get_rule(conn, rule_id))


@router.put("/{rule_id}")
async def replace_rule(rule_id: str, body: RuleWriteRequest, uow: UowDep, actor: ActorDep) -> RuleResponse:
    async with uow.begin() as tx:
        rule = await store.replace_rule(
            tx, rule_id, body.to_draft(), expected_version=body.expected_version, actor=actor
        )
    return RuleResponse.of(rule)


@router.delete("/{rule_id}", status_code=204)
async def delete_rule(rule_id: str, uow: UowDep, actor: ActorDep, expected_version: int | None = None) -> Response:
    async with uow.begin() as tx:
        await store.delete_rule(tx, rule_id, expected_version=expected_version, actor=actor)
    return Response(status_code=204)


@router.get("/{rule_id}/history")
async def rule_history(rule_id: str, uow: UowDep, limit: PageLimit, after: str | None = None) -> AuditListResponse:
    """Every version of the rule: who changed it, when, and what it was before and after."""
    async with uow.read() as conn:
        entries = await store.list_audit(conn, resource_type="rule", resource_id=rule_id, after=after, limit=limit)
    cursor = entries[-1].audit_id if len(entries) == limit else None
    return AuditListResponse(
        items=[AuditEntryResponse.model_validate(e, from_attributes=True) for e in entries], next_cursor=cursor
    )
