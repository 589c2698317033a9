"""Points rules (operators: any merchant or all; merchants: their own payments only) and a user's earnings.
The balance itself is the ledger's (points sub-account); marketing lists what each payment earned."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from sqlalchemy import select
from sqlalchemy.engine import RowMapping

from libs.common.errors import Problem
from libs.common.paging import KnownQueryOnly
from libs.common.web import UowDep
from services.marketing.api.deps import (
    ManagerDep,
    MarketingContextDep,
    NowDep,
    PageLimit,
    PaymentCursor,
    RuleCursor,
    UserDep,
)
from services.marketing.api.routes.coupons import coupon_response
from services.marketing.api.schemas import (
    PointsEarningListResponse,
    PointsEarningResponse,
    PointsExchangeRequest,
    PointsExchangeResponse,
    PointsRuleCreateRequest,
    PointsRuleListResponse,
    PointsRuleResponse,
)
from services.marketing.domain.errors import FUNDING_NOT_ALLOWED, POINTS_RULE_NOT_FOUND
from services.marketing.domain.points import remaining
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


@router.get("/points-rules", dependencies=[KnownQueryOnly])
async def list_rules(
    who: ManagerDep, uow: UowDep, limit: PageLimit, cursor: RuleCursor = None
) -> PointsRuleListResponse:
    """Rules newest first (a merchant sees its own), in the one list shape (libs.common.paging)."""
    query = select(points_rules).order_by(points_rules.c.rule_id.desc()).limit(limit + 1)
    if who.owner_scope is not None:
        query = query.where(points_rules.c.owner_merchant_id == who.owner_scope)
    if cursor:
        query = query.where(points_rules.c.rule_id < cursor)
    async with uow.read() as conn:
        rows = list((await conn.execute(query)).mappings())
    return PointsRuleListResponse.of(
        rows, limit, item=lambda r: PointsRuleResponse.model_validate(dict(r)), cursor_of=lambda r: r.rule_id
    )


@router.post("/points-rules/{rule_id}/end")
async def end_rule(rule_id: Id, who: ManagerDep, uow: UowDep) -> PointsRuleResponse:
    async with uow.begin() as tx:
        row = await points.end_rule(tx, who, rule_id)
    if row is None:
        raise Problem(POINTS_RULE_NOT_FOUND, f"no points rule {rule_id}")
    return PointsRuleResponse.model_validate(dict(row))


@router.get("/me/points/earnings", dependencies=[KnownQueryOnly])
async def my_earnings(
    who: UserDep, uow: UowDep, limit: PageLimit, cursor: PaymentCursor = None
) -> PointsEarningListResponse:
    """What each of the user's payments earned, by payment id descending, in the one list shape."""
    e = points_earnings.c
    query = select(points_earnings).where(e.user_id == who.user_id).order_by(e.payment_id.desc()).limit(limit + 1)
    if cursor:
        query = query.where(e.payment_id < cursor)
    async with uow.read() as conn:
        rows = list((await conn.execute(query)).mappings())
    return PointsEarningListResponse.of(rows, limit, item=_earning, cursor_of=lambda r: r.payment_id)


def _earning(r: RowMapping) -> PointsEarningResponse:
    return PointsEarningResponse.model_validate(
        {
            **r,
            "remaining_points": remaining(
                r["points"],
                reversed_points=r["reversed_points"],
                consumed_points=r["consumed_points"],
                expired_points=r["expired_points"],
            ),
        }
    )


@router.post("/me/points/exchanges", status_code=201)
async def exchange_points(
    body: PointsExchangeRequest,
    who: UserDep,
    uow: UowDep,
    context: MarketingContextDep,
    now: NowDep,
    response: Response,
) -> PointsExchangeResponse:
    """Points for one coupon of a stock that offers them: the lots that expire first are spent first. The same
    request_id again returns the first exchange (200)."""
    assert who.user_id is not None
    tz = context.settings.day_timezone
    async with uow.begin() as tx:
        row, coupon, created = await points.exchange(
            tx, user_id=who.user_id, stock_id=body.stock_id, request_id=body.request_id, now=now, day_timezone=tz
        )
    if not created:
        response.status_code = 200
    return PointsExchangeResponse(
        exchange_id=row["exchange_id"],
        stock_id=row["stock_id"],
        points=row["points"],
        coupon=coupon_response(coupon),
        created_at=row["created_at"],
    )
