"""Channel coupon programmes for marketing (internal; the gateway answers 404 for /v1/internal from outside) and
the channels' coupon callbacks (`/v1/notify/coupons/...`, passed through by the gateway like every notify URL).
What and why: services/cashier/flows/channel_coupons.py, docs/marketing.md "Channel coupons"."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.cashier.api.deps import CashierDep
from services.cashier.api.routes.notify import NOTIFICATION_BODY_MAX_BYTES
from services.cashier.connectors.coupons import ChannelStockRequest
from services.cashier.flows import channel_coupons as flows

router = APIRouter(tags=["internal"])
Program = Literal["wechatpay_favor", "alipay_voucher"]
Id = Annotated[str, Path(min_length=1, max_length=64)]
RequestNo = Annotated[str, Field(pattern=r"^[0-9A-Za-z_\-]{1,64}$")]
ActingMerchant = Annotated[str, Query(min_length=1, max_length=64, description="Whose channel account acts")]
ChannelUser = Annotated[str, Query(min_length=1, max_length=128, description="The coupon holder's openid")]
LIVEMODE_DOC = "Which configuration acts when the merchant holds a test and a live one (absent: its only one)"
Livemode = Annotated[bool | None, Query(description=LIVEMODE_DOC)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChannelStockCreate(_Body):
    program: Program
    merchant_id: str = Field(min_length=1, max_length=64, description="The stock's creator (its channel account)")
    out_request_no: RequestNo
    name: str = Field(min_length=1, max_length=64)
    amount_minor: int = Field(ge=1, le=10**9)
    threshold_minor: int = Field(ge=0, le=10**12)
    max_coupons: int = Field(ge=1, le=10**8)
    max_per_user: int = Field(ge=1, le=100)
    begin: datetime
    end: datetime
    usable_at_merchant_ids: list[str] = Field(default_factory=list, max_length=50)
    no_cash: bool = False
    livemode: bool | None = Field(default=None, description=LIVEMODE_DOC)

    @model_validator(mode="after")
    def _window(self) -> ChannelStockCreate:
        if self.begin.tzinfo is None or self.end.tzinfo is None or self.end <= self.begin:
            raise ValueError("begin and end carry a time zone, and end is after begin")
        if self.threshold_minor <= self.amount_minor:
            raise ValueError("threshold_minor must exceed amount_minor (both channels' rule)")
        return self


class ChannelStockAction(_Body):
    merchant_id: str = Field(min_length=1, max_length=64)
    out_request_no: RequestNo
    livemode: bool | None = Field(default=None, description=LIVEMODE_DOC)


class ChannelCouponSend(_Body):
    program: Program
    merchant_id: str = Field(min_length=1, max_length=64)
    channel_stock_id: str = Field(min_length=1, max_length=64)
    user: str = Field(min_length=1, max_length=128, description="openid (WeChat) or Alipay user id")
    out_request_no: RequestNo
    livemode: bool | None = Field(default=None, description=LIVEMODE_DOC)


@router.post("/v1/internal/channel-coupons/stocks")
async def create_stock(body: ChannelStockCreate, cashier: CashierDep) -> dict[str, Any]:
    """Create a stock at the channel; the same out_request_no and parameters answer the same stock."""
    request = ChannelStockRequest(
        out_request_no=body.out_request_no,
        name=body.name,
        amount_minor=body.amount_minor,
        threshold_minor=body.threshold_minor,
        max_coupons=body.max_coupons,
        max_per_user=body.max_per_user,
        begin=body.begin,
        end=body.end,
        no_cash=body.no_cash,
    )
    return await flows.create_stock(
        cashier,
        program=body.program,
        merchant_id=body.merchant_id,
        request=request,
        usable_at=body.usable_at_merchant_ids,
        livemode=body.livemode,
    )


@router.post("/v1/internal/channel-coupons/stocks/{program}/{channel_stock_id}/{action}")
async def stock_action(
    program: Program,
    channel_stock_id: Id,
    action: Literal["start", "pause", "restart", "stop"],
    body: ChannelStockAction,
    cashier: CashierDep,
) -> dict[str, Any]:
    return await flows.stock_action(
        cashier,
        program=program,
        merchant_id=body.merchant_id,
        channel_stock_id=channel_stock_id,
        action=action,
        out_request_no=body.out_request_no,
        livemode=body.livemode,
    )


@router.get("/v1/internal/channel-coupons/stocks/{program}/{channel_stock_id}")
async def get_stock(
    program: Program, channel_stock_id: Id, merchant_id: ActingMerchant, cashier: CashierDep, livemode: Livemode = None
) -> dict[str, Any]:
    return await flows.query_stock(
        cashier, program=program, merchant_id=merchant_id, channel_stock_id=channel_stock_id, livemode=livemode
    )


@router.post("/v1/internal/channel-coupons/coupons")
async def send_coupon(body: ChannelCouponSend, cashier: CashierDep) -> dict[str, Any]:
    """Send one coupon to a user at the channel (idempotent there by out_request_no)."""
    return await flows.send_coupon(
        cashier,
        program=body.program,
        merchant_id=body.merchant_id,
        channel_stock_id=body.channel_stock_id,
        user=body.user,
        out_request_no=body.out_request_no,
        livemode=body.livemode,
    )


@router.get("/v1/internal/channel-coupons/coupons/{program}/{channel_coupon_id}")
async def get_coupon(
    program: Program,
    channel_coupon_id: Id,
    merchant_id: ActingMerchant,
    user: ChannelUser,
    cashier: CashierDep,
    livemode: Livemode = None,
) -> dict[str, Any]:
    return await flows.query_coupon(
        cashier,
        program=program,
        merchant_id=merchant_id,
        channel_coupon_id=channel_coupon_id,
        user=user,
        livemode=livemode,
    )


@router.post("/v1/notify/coupons/{program}/{merchant_id}", include_in_schema=False)
async def notify_coupon(program: str, merchant_id: str, request: Request, cashier: CashierDep) -> Response:
    """WeChat `COUPON.USE` and Alipay's voucher activity messages for stocks marketing created."""
    body = await request.body()
    reply = await flows.handle_coupon_notification(
        cashier,
        program=program,
        merchant_id=merchant_id,
        headers=dict(request.headers),
        body=body[: NOTIFICATION_BODY_MAX_BYTES + 1],
    )
    return Response(content=reply.body, status_code=reply.status_code, media_type=reply.content_type)
