"""Channel coupon mirroring: the channels' callbacks handed over by the cashier (internal), and the daily comparison
of our view with the channel's (operators: every channel stock; a merchant: its own). Flows:
flows/channel_coupons.py, flows/channel_comparison.py; docs/marketing.md "Channel coupons"."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from libs.common.paging import KnownQueryOnly
from libs.common.web import UowDep
from services.marketing.api.deps import ManagerDep, MarketingContextDep, ServicesOnly
from services.marketing.flows import channel_comparison, channel_coupons

internal = APIRouter(prefix="/v1/internal/marketing", tags=["internal"], dependencies=[ServicesOnly])
router = APIRouter(prefix="/v1/marketing", tags=["channel coupons"])
Text = Annotated[str, Field(min_length=1, max_length=128)]


class ChannelCouponEventRequest(BaseModel):
    """A verified channel callback, as the cashier hands it over (services/cashier/flows/channel_coupons.py)."""

    model_config = ConfigDict(extra="ignore")  # the cashier may add fields; marketing reads these

    program: Literal["wechatpay_favor", "alipay_voucher"]
    merchant_id: Text
    event_id: Text
    kind: Literal["used", "received", "expired", "stock"]
    channel_stock_id: Text
    channel_coupon_id: Text | None = None
    occurred_at: datetime | None = None
    transaction_id: Text | None = None
    detail: dict[str, str] = Field(default_factory=dict, max_length=20)


@internal.post("/channel-coupon-events")
async def channel_coupon_event(body: ChannelCouponEventRequest, uow: UowDep) -> dict[str, Any]:
    """Store the callback once (by its channel id) and apply it to its coupon when known: 200 either way (the
    cashier then acknowledges it to the channel); `recorded: false` for a replay, which changes nothing."""
    async with uow.begin() as tx:
        recorded = await channel_coupons.record_event(tx, body.model_dump())
    return {"recorded": recorded, "event_id": body.event_id}


@router.get("/channel-comparisons", dependencies=[KnownQueryOnly])
async def channel_comparison_of(
    who: ManagerDep, uow: UowDep, context: MarketingContextDep, day: Annotated[date, Query(alias="date")]
) -> dict[str, Any]:
    """Marketing's view of its channel stocks against the channel's for one day (read only; mismatches listed)."""
    settings = context.settings
    return await channel_comparison.compare(
        uow,
        context.cashier,
        day=day,
        day_timezone=settings.day_timezone,
        owner=who.owner_scope,
        coupons_max=settings.channel_comparison_coupons_max,
    )
