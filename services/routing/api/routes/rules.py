"""Admin API for routing rules (/v1/rules): validated on write, versioned, audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from libs.common.paging import KnownQueryOnly, PageLimit, cursor_query
from libs.common.web import UowDep
from services.routing.api.deps import ActorDep
from services.routing.api.schemas import (
    AuditEntryResponse,
    AuditListResponse,
    RuleListResponse,
    RuleResponse,
    RuleWriteRequest,
)
from services.routing.domain.rules import RuleScope
from services.routing.store import audit
from services.routing.store import rules as store

router = APIRouter(prefix="/v1/rules", tags=["rules"])


@router.post("", status_code=201)
async def create_rule(body: RuleWriteRequest, uow: UowDep, actor: ActorDep) -> RuleResponse:
    async with uow.begin() as tx:
        rule = await store.create_rule(tx, body.to_draft(), actor=actor)
    return RuleResponse.of(rule)


RULE_CURSOR = r"^rul_[0-9a-z]+$"
AUDIT_CURSOR = r"^aud_[0-9a-z]+$"


@router.get("", dependencies=[KnownQueryOnly])
async def list_rules(
    uow: UowDep,
    limit: PageLimit,
    scope: RuleScope | None = None,
    merchant_id: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, cursor_query(RULE_CURSOR)] = None,
) -> RuleListResponse:
    """Rules by rule id; `scope` is `platform` or `merchant` (anything else is 422)."""
    async with uow.read() as conn:
        rules = await store.list_rules(
            conn, scope=scope.value if scope else None, merchant_id=merchant_id, after=cursor, limit=limit + 1
        )
    return RuleListResponse.of(rules, limit, item=RuleResponse.of, cursor_of=lambda r: r.rule_id)


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


@router.get("/{rule_id}/history", dependencies=[KnownQueryOnly])
async def rule_history(
    rule_id: str, uow: UowDep, limit: PageLimit, cursor: Annotated[str | None, cursor_query(AUDIT_CURSOR)] = None
) -> AuditListResponse:
    """Every version of the rule: who changed it, when, and what it was before and after."""
    async with uow.read() as conn:
        entries = await audit.list_audit(conn, resource_type="rule", resource_id=rule_id, after=cursor, limit=limit + 1)
    return AuditListResponse.of(entries, limit, item=audit_entry, cursor_of=lambda e: e.audit_id)


def audit_entry(entry: object) -> AuditEntryResponse:
    return AuditEntryResponse.model_validate(entry, from_attributes=True)
