"""Points rules (operators: any merchant or all; merchants: their own payments only) and a user's earnings.
The balance itself is the ledger's (points sub-account); marketing lists what each payment earned."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy import select

from libs.common.errors import Problem
from libs.common.web import UowDep
from services.marketing.api.deps import Cursor, ManagerDep, PageLimit, UserDep
from services.marketing.api.schemas import (
    PointsEarningListResponse,
    PointsEarningResponse,
    PointsRuleCreateRequest,
    PointsRuleListResponse,
    PointsRuleResponse,
)
from services.marketing.domain.errors import FUNDING_NOT_ALLOWED, POINTS_RULE_NOT_FOUND
from services.marketing.flows import points
from services.marketing.store.tables import points_earnings, points_rules

router = APIRouter(prefix="/v1/marketing", tags=["points"])
Id = Annotated[str, Path(max_length=64)]


@router.post("/points-rules", status_code=201)
async def create_rule(body: PointsRuleCreateRequest, who: ManagerDep, uow: UowDep) -> PointsRuleResponse:
    """A merchant's rule covers its own payments only (and it pays for the points)."""
    values = body.model_dump()
    if who.kind == "merchant":
        if values["merchant_id"] not in (None, who.merchant_id):
            raise Problem(FUNDING_NOT_ALLOWED, "a merchant's points rule covers its own payments only")
        values["merchant_id"] = who.merchant_id
    async with uow.begin() as tx:
        row = await points.create_rule(tx, who, values)
    return PointsRuleResponse.model_validate(dict(row))


@router.get("/points-rules")
async def list_rules(who: ManagerDep, uow: UowDep, limit: PageLimit, cursor: Cursor = None) -> PointsRuleListResponse:
    query = select(points_rules).order_by(points_rules.c.rule_id.desc()).limit(limit)
    if who.owner_scope is not None:
        query = query.where(points_rules.c.owner_merchant_id == who.owner_scope)
    if cursor:
        query = query.where(points_rules.c.rule_id < cursor)
    async with uow.read() as conn:
        items = [PointsRuleResponse.model_validate(dict(r)) for r in (await conn.execute(query)).mappings()]
    return PointsRuleListResponse(rules=items, next_cursor=items[-1].rule_id if len(items) == limit else None)


@router.post("/points-rules/{rule_id}/end")
async def end_rule(rule_id: Id, who: ManagerDep, uow: UowDep) -> PointsRuleResponse:
    async with uow.begin() as tx:
        row = await points.end_rule(tx, who, rule_id)
    if row is None:
        raise Problem(POINTS_RULE_NOT_FOUND, f"no points rule {rule_id}")
    return PointsRuleResponse.model_validate(dict(row))


@router.get("/me/points/earnings")
async def my_earnings(who: UserDep, uow: UowDep, limit: PageLimit, cursor: Cursor = None) -> PointsEarningListResponse:
    e = points_earnings.c
    query = select(points_earnings).where(e.user_id == who.user_id).order_by(e.payment_id.desc()).limit(limit)
    if cursor:
        query = query.where(e.payment_id < cursor)
    async with uow.read() as conn:
        items = [PointsEarningResponse.model_validate(dict(r)) for r in (await conn.execute(query)).mappings()]
    return PointsEarningListResponse(earnings=items, next_cursor=items[-1].payment_id if len(items) == limit else None)
