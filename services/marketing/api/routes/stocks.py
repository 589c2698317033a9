"""Campaigns and coupon stocks: operators manage any, merchants their own (others' are "not found")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from libs.common.errors import Problem
from libs.common.paging import KnownQueryOnly
from libs.common.web import UowDep
from services.marketing.api.deps import (
    CampaignCursor,
    ManagerDep,
    MarketingContextDep,
    NowDep,
    PageLimit,
    StockCursor,
)
from services.marketing.api.schemas import (
    CampaignCreateRequest,
    CampaignListResponse,
    CampaignResponse,
    StatsResponse,
    StockBudgetRequest,
    StockCreateRequest,
    StockListResponse,
    StockResponse,
)
from services.marketing.domain import rules
from services.marketing.domain.errors import CAMPAIGN_NOT_FOUND, STOCK_NOT_FOUND
from services.marketing.flows import channel_stocks, stats, stocks
from services.marketing.store import stocks as store

router = APIRouter(prefix="/v1/marketing", tags=["campaigns"])
Id = Annotated[str, Path(max_length=64)]
SHARE_BY_PARTY = {"platform": rules.BPS, "merchant": 0}
CampaignFilter = Annotated[str | None, Query(max_length=64)]


@router.post("/campaigns", status_code=201)
async def create_campaign(body: CampaignCreateRequest, who: ManagerDep, uow: UowDep) -> CampaignResponse:
    async with uow.begin() as tx:
        row = await stocks.create_campaign(tx, who, name=body.name, description=body.description)
    return CampaignResponse.model_validate(dict(row))


@router.get("/campaigns", dependencies=[KnownQueryOnly])
async def list_campaigns(
    who: ManagerDep, uow: UowDep, limit: PageLimit, cursor: CampaignCursor = None
) -> CampaignListResponse:
    """Campaigns newest first (a merchant sees its own), in the one list shape (libs.common.paging)."""
    async with uow.read() as conn:
        rows = await store.list_campaigns(conn, owner=who.owner_scope, before_id=cursor, limit=limit + 1)
    return CampaignListResponse.of(
        rows, limit, item=lambda r: CampaignResponse.model_validate(dict(r)), cursor_of=lambda c: c.campaign_id
    )


@router.get("/campaigns/{campaign_id}")
async def get_campaign(campaign_id: Id, who: ManagerDep, uow: UowDep) -> CampaignResponse:
    async with uow.read() as conn:
        row = await store.get_campaign(conn, campaign_id, who.owner_scope)
    if row is None:
        raise Problem(CAMPAIGN_NOT_FOUND, f"no campaign {campaign_id}")
    return CampaignResponse.model_validate(dict(row))


@router.get("/campaigns/{campaign_id}/stats")
async def campaign_stats(campaign_id: Id, who: ManagerDep, uow: UowDep) -> StatsResponse:
    """Issued, claimed, redeemed and the cost by funding party, net of refunds and undos."""
    async with uow.read() as conn:
        if await store.get_campaign(conn, campaign_id, who.owner_scope) is None:
            raise Problem(CAMPAIGN_NOT_FOUND, f"no campaign {campaign_id}")
        return StatsResponse.model_validate(await stats.campaign_stats(conn, campaign_id))


@router.post("/stocks", status_code=201)
async def create_stock(body: StockCreateRequest, who: ManagerDep, uow: UowDep, now: NowDep) -> StockResponse:
    """A stock in `draft`. Invalid rules → 422 `invalid_stock` (naming the field); a merchant funding
    anything but itself → 403 `funding_not_allowed`. With `channel`, also what the channel can mirror."""
    share = (
        body.platform_share_bps if body.platform_share_bps is not None else SHARE_BY_PARTY.get(body.funding_party, -1)
    )
    draft = stocks.StockDraft(
        campaign_id=body.campaign_id,
        name=body.name,
        terms=rules.StockRules(
            discount_kind=body.discount_kind,
            currency=body.currency,
            amount_off_minor=body.amount_off_minor,
            percent_off_bps=body.percent_off_bps,
            discount_cap_minor=body.discount_cap_minor,
            threshold_minor=body.threshold_minor,
            funding_party=body.funding_party,
            platform_share_bps=share,
            merchant_ids=tuple(body.merchant_ids),
            store_ids=tuple(body.store_ids),
            scenes=tuple(body.scenes),
            payment_methods=tuple(body.payment_methods),
        ),
        valid_from=body.valid_from,
        valid_until=body.valid_until,
        valid_days_after_claim=body.valid_days_after_claim,
        refund_policy=body.refund_policy,
        budget_count=body.budget_count,
        budget_minor=body.budget_minor,
        per_user_limit=body.per_user_limit,
        per_user_daily_limit=body.per_user_daily_limit,
        daily_count_limit=body.daily_count_limit,
        points_price=body.points_price,
        channel=body.channel,
    )
    if body.channel is not None:
        channel_stocks.check_definition(draft, now=now)
    async with uow.begin() as tx:
        row = await stocks.create_stock(tx, who, draft)
    return StockResponse.model_validate(dict(row))


@router.get("/stocks", dependencies=[KnownQueryOnly])
async def list_stocks(
    who: ManagerDep, uow: UowDep, limit: PageLimit, cursor: StockCursor = None, campaign_id: CampaignFilter = None
) -> StockListResponse:
    """Stocks newest first (a merchant sees its own; optionally one campaign's), in the one list shape."""
    async with uow.read() as conn:
        rows = await store.list_stocks(
            conn, owner=who.owner_scope, campaign_id=campaign_id, before_id=cursor, limit=limit + 1
        )
    return StockListResponse.of(
        rows, limit, item=lambda r: StockResponse.model_validate(dict(r)), cursor_of=lambda s: s.stock_id
    )


@router.get("/stocks/{stock_id}")
async def get_stock(stock_id: Id, who: ManagerDep, uow: UowDep) -> StockResponse:
    async with uow.read() as conn:
        row = await store.get_stock(conn, stock_id, who.owner_scope)
    if row is None:
        raise Problem(STOCK_NOT_FOUND, f"no stock {stock_id}")
    return StockResponse.model_validate(dict(row))


@router.post("/stocks/{stock_id}/budget")
async def set_budget(stock_id: Id, body: StockBudgetRequest, who: ManagerDep, uow: UowDep) -> StockResponse:
    """Set the budget totals (top up, or lower down to what is issued); the remainders move by the same
    difference in one conditional UPDATE, exact with concurrent claims."""
    async with uow.begin() as tx:
        row = await stocks.set_budget(tx, who, stock_id, budget_count=body.budget_count, budget_minor=body.budget_minor)
    return StockResponse.model_validate(dict(row))


def _transition_route(name: rules.Transition) -> None:
    async def transition_stock(
        stock_id: Id, who: ManagerDep, uow: UowDep, context: MarketingContextDep, now: NowDep
    ) -> StockResponse:
        """A channel stock goes to its channel first (flows/channel_stocks.py), then changes here."""
        async with uow.read() as conn:
            stock = await store.get_stock(conn, stock_id, who.owner_scope)
        if stock is not None and stock["channel"] is not None:
            row = await channel_stocks.transition(
                uow,
                context.cashier,
                who,
                stock_id,
                name,
                account_merchant_id=context.settings.channel_account_merchant_id,
                now=now,
            )
            return StockResponse.model_validate(dict(row))
        async with uow.begin() as tx:
            row = await stocks.transition(tx, who, stock_id, name)
        return StockResponse.model_validate(dict(row))

    transition_stock.__name__ = f"{name}_stock"
    router.post(f"/stocks/{{stock_id}}/{name}", summary=f"{name.capitalize()} a stock", description=TRANSITIONS_DOC)(
        transition_stock
    )


TRANSITIONS_DOC = "draft →start→ running ⇄ (pause/resume) paused; any but ended →end→ ended. Not allowed now → 409."
for _name in ("start", "pause", "resume", "end"):
    _transition_route(_name)
