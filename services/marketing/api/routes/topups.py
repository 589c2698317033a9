"""Top-up promotions (充值送): operators create and end them (the platform funds every bonus); a user reads
the bonuses its own top-ups earned. The bonus balance itself is the ledger's (the wallet's bonus sub-account)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy import select
from sqlalchemy.engine import RowMapping

from libs.common.errors import Problem
from libs.common.paging import KnownQueryOnly
from libs.common.web import UowDep
from services.marketing.api.deps import OperatorDep, PageLimit, PaymentCursor, PromotionCursor, UserDep
from services.marketing.api.schemas import (
    TopupBonusGrantListResponse,
    TopupBonusGrantResponse,
    TopupPromotionCreateRequest,
    TopupPromotionListResponse,
    TopupPromotionResponse,
)
from services.marketing.domain.errors import TOPUP_PROMOTION_NOT_FOUND
from services.marketing.domain.topups import Tier, check_rule
from services.marketing.flows import topups
from services.marketing.store.tables import topup_bonus_grants, topup_promotions

router = APIRouter(prefix="/v1/marketing", tags=["top-up promotions"])
Id = Annotated[str, Path(max_length=64)]


@router.post("/topup-promotions", status_code=201)
async def create_promotion(body: TopupPromotionCreateRequest, who: OperatorDep, uow: UowDep) -> TopupPromotionResponse:
    """Running at once (within `valid_from`/`valid_until`); inconsistent rules → 422 `invalid_topup_promotion`."""
    tiers = [Tier(t.min_topup_minor, t.bonus_minor) for t in body.tiers]
    check_rule(tiers, budget_minor=body.budget_minor, valid_from=body.valid_from, valid_until=body.valid_until)
    async with uow.begin() as tx:
        row = await topups.create(tx, body.model_dump())
    return TopupPromotionResponse.model_validate(dict(row))


@router.get("/topup-promotions", dependencies=[KnownQueryOnly])
async def list_promotions(
    who: OperatorDep, uow: UowDep, limit: PageLimit, cursor: PromotionCursor = None
) -> TopupPromotionListResponse:
    """Promotions newest first, in the one list shape (libs.common.paging)."""
    p = topup_promotions.c
    query = select(topup_promotions).order_by(p.promotion_id.desc()).limit(limit + 1)
    if cursor:
        query = query.where(p.promotion_id < cursor)
    async with uow.read() as conn:
        rows = list((await conn.execute(query)).mappings())
    return TopupPromotionListResponse.of(
        rows, limit, item=lambda r: TopupPromotionResponse.model_validate(dict(r)), cursor_of=lambda p: p.promotion_id
    )


@router.get("/topup-promotions/{promotion_id}")
async def get_promotion(promotion_id: Id, who: OperatorDep, uow: UowDep) -> TopupPromotionResponse:
    async with uow.read() as conn:
        row = await topups.get(conn, promotion_id)
    return _found(row, promotion_id)


@router.post("/topup-promotions/{promotion_id}/end")
async def end_promotion(promotion_id: Id, who: OperatorDep, uow: UowDep) -> TopupPromotionResponse:
    """Stops it (repeat: no-op): no later top-up gets its bonus; bonuses granted stay the holders'."""
    async with uow.begin() as tx:
        row = await topups.end(tx, promotion_id)
    return _found(row, promotion_id)


def _found(row: RowMapping | None, promotion_id: str) -> TopupPromotionResponse:
    if row is None:
        raise Problem(TOPUP_PROMOTION_NOT_FOUND, f"no top-up promotion {promotion_id}")
    return TopupPromotionResponse.model_validate(dict(row))


@router.get("/me/topup-bonuses", dependencies=[KnownQueryOnly])
async def my_bonuses(
    who: UserDep, uow: UowDep, limit: PageLimit, cursor: PaymentCursor = None
) -> TopupBonusGrantListResponse:
    """What each of the user's top-ups earned (the wallet holder id is the user id), by payment id descending,
    in the one list shape (libs.common.paging)."""
    g = topup_bonus_grants.c
    query = select(topup_bonus_grants).where(g.holder_id == who.user_id).order_by(g.payment_id.desc())
    query = query.limit(limit + 1)
    if cursor:
        query = query.where(g.payment_id < cursor)
    async with uow.read() as conn:
        rows = list((await conn.execute(query)).mappings())
    return TopupBonusGrantListResponse.of(
        rows, limit, item=lambda r: TopupBonusGrantResponse.model_validate(dict(r)), cursor_of=lambda b: b.payment_id
    )
