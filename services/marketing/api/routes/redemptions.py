"""Redeeming coupons. Online, for the cashier (`/v1/internal/marketing`, never routed by the gateway):
lock → confirm | release, refunds. In store, for a merchant's staff (`/v1/marketing/in-store`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from libs.common.errors import VALIDATION_FAILED, Problem
from libs.common.money import MAX_AMOUNT_MINOR
from libs.common.paging import KnownQueryOnly
from libs.common.web import UowDep
from services.marketing.api.deps import MarketingContextDep, MerchantDep, NowDep, PageLimit, ServicesOnly
from services.marketing.api.routes.coupons import QR_PREFIX
from services.marketing.api.schemas import (
    ApplicableCouponListResponse,
    ApplicableCouponResponse,
    FundingResponse,
    InStoreRedeemRequest,
    InStoreVerifyResponse,
    LockCreateRequest,
    RedemptionResponse,
    RefundCreateRequest,
    RefundResponse,
    ReleaseRequest,
    redemption_response,
)
from services.marketing.domain import rules
from services.marketing.domain.errors import REDEMPTION_NOT_FOUND
from services.marketing.flows import redemptions as flow
from services.marketing.store import coupons as store

internal = APIRouter(prefix="/v1/internal/marketing", tags=["internal"], dependencies=[ServicesOnly])
in_store = APIRouter(prefix="/v1/marketing/in-store", tags=["in-store"])
Id = Annotated[str, Path(max_length=64)]
Ref = Annotated[str | None, Query(max_length=64)]


@internal.post("/locks", status_code=201)
async def lock_coupon(
    body: LockCreateRequest, uow: UowDep, context: MarketingContextDep, now: NowDep, response: Response
) -> RedemptionResponse:
    """Lock the user's coupon for a payment; marketing computes the discount (`payable_minor` is what the
    channel is asked for). The same payment_id again returns the first lock (200)."""
    settings = context.settings
    seconds = min(body.lock_seconds or settings.lock_seconds_default, settings.lock_seconds_max)
    ctx = rules.PaymentContext(
        merchant_id=body.merchant_id,
        order_amount_minor=body.order_amount_minor,
        currency=body.currency,
        store_id=body.store_id,
        scene=body.scene,
        payment_method=body.payment_method,
    )
    if (body.coupon_id is None) == (body.coupon_code is None):
        raise Problem(VALIDATION_FAILED, "give exactly one of coupon_id or coupon_code")
    async with uow.begin() as tx:
        coupon_id = body.coupon_id or await flow.coupon_id_of_code(tx, str(body.coupon_code), body.user_id)
        req = flow.LockRequest(
            payment_id=body.payment_id, coupon_id=coupon_id, user_id=body.user_id, context=ctx, lock_seconds=seconds
        )
        row, created = await flow.lock(tx, req, now)
    if not created:
        response.status_code = 200
    return redemption_response(row)


@internal.get("/users/{user_id}/applicable-coupons", dependencies=[KnownQueryOnly])
async def applicable_coupons(
    user_id: Id,
    uow: UowDep,
    now: NowDep,
    limit: PageLimit,
    merchant_id: Annotated[str, Query(min_length=1, max_length=64)],
    order_amount_minor: Annotated[int, Query(ge=1, le=MAX_AMOUNT_MINOR)],
    currency: Annotated[str, Query(pattern=r"^[A-Z]{3}$")] = "CNY",
    store_id: Ref = None,
    scene: Ref = None,
    payment_method: Ref = None,
) -> ApplicableCouponListResponse:
    """The user's coupons this payment could use, best discount first (for the checkout to offer): the best
    `limit` in the one list shape, without a cursor (ranked by discount, not by id); `has_more` says more fit."""
    ctx = rules.PaymentContext(
        merchant_id=merchant_id,
        order_amount_minor=order_amount_minor,
        currency=currency,
        store_id=store_id,
        scene=scene,
        payment_method=payment_method,
    )
    async with uow.read() as conn:
        offers = await flow.applicable(conn, user_id=user_id, ctx=ctx, now=now, limit=limit + 1)
    return ApplicableCouponListResponse(
        data=[
            ApplicableCouponResponse(
                coupon_id=c["coupon_id"],
                stock_id=c["stock_id"],
                discount_minor=d,
                payable_minor=order_amount_minor - d,
                valid_until=c["valid_until"],
            )
            for c, d in offers[:limit]
        ],
        has_more=len(offers) > limit,
    )


@internal.get("/redemptions/{redemption_id}")
async def get_redemption(redemption_id: Id, uow: UowDep) -> RedemptionResponse:
    async with uow.read() as conn:
        row = await store.get_redemption(conn, redemption_id)
    if row is None:
        raise Problem(REDEMPTION_NOT_FOUND, f"no redemption {redemption_id}")
    return redemption_response(row)


@internal.post("/redemptions/{redemption_id}/confirm")
async def confirm(redemption_id: Id, uow: UowDep, now: NowDep) -> RedemptionResponse:
    """The payment succeeded: the coupon is used (`coupon.used` with the funding split)."""
    async with uow.begin() as tx:
        return redemption_response(await flow.confirm(tx, redemption_id, now))


@internal.post("/redemptions/{redemption_id}/release")
async def release(redemption_id: Id, body: ReleaseRequest, uow: UowDep, now: NowDep) -> RedemptionResponse:
    """The payment failed or closed: the coupon is the user's again."""
    async with uow.begin() as tx:
        return redemption_response(await flow.release(tx, redemption_id, body.reason, now))


@internal.post("/redemptions/{redemption_id}/refunds")
async def refund(redemption_id: Id, body: RefundCreateRequest, uow: UowDep) -> RefundResponse:
    """A refund of the paid amount: reverses the discount's funding proportionally; a full refund returns
    the coupon if the stock's `refund_policy` says so. Idempotent by refund_id."""
    async with uow.begin() as tx:
        row, done = await flow.refund(
            tx, redemption_id, refund_id=body.refund_id, refund_minor=body.refund_amount_minor
        )
    return RefundResponse(
        refund_id=done["refund_id"],
        redemption_id=redemption_id,
        refund_amount_minor=done["refund_amount_minor"],
        reversed_platform_minor=done["platform_minor"],
        reversed_merchant_minor=done["merchant_minor"],
        coupon_returned=done["coupon_returned"] == "yes",
        redemption=redemption_response(row),
    )


def _code(body: InStoreRedeemRequest) -> str:
    if (body.code is None) == (body.qr_payload is None):
        raise Problem(VALIDATION_FAILED, "give exactly one of code or qr_payload")
    if body.code is not None:
        return body.code
    assert body.qr_payload is not None
    code = body.qr_payload.removeprefix(QR_PREFIX)
    # 16 digits when Juhe issued the coupon; a migrated coupon's own code otherwise (schemas.CouponCode).
    if code == body.qr_payload or not 4 <= len(code) <= 64 or not code.replace("-", "").replace("_", "").isalnum():
        raise Problem(VALIDATION_FAILED, "qr_payload is not a Juhe coupon QR payload")
    return code


def _context(body: InStoreRedeemRequest, merchant_id: str) -> rules.PaymentContext:
    return rules.PaymentContext(
        merchant_id=merchant_id,
        order_amount_minor=body.order_amount_minor,
        currency=body.currency,
        store_id=body.store_id,
        scene="in_store",
        payment_method=body.payment_method,
    )


@in_store.post("/verifications")
async def verify(
    body: InStoreRedeemRequest, merchant_id: MerchantDep, uow: UowDep, now: NowDep
) -> InStoreVerifyResponse:
    """What the coupon would give on this order at this merchant's store; nothing changes."""
    async with uow.begin() as tx:
        values, _ = await flow.redeem_in_store(
            tx, code=_code(body), request_id=body.request_id, ctx=_context(body, merchant_id), now=now, dry_run=True
        )
    return InStoreVerifyResponse(
        coupon_id=values["coupon_id"],
        stock_id=values["stock_id"],
        discount_minor=values["discount_minor"],
        payable_minor=values["payable_minor"],
        valid_until=values["valid_until"],
        funding=FundingResponse(
            party=values["funding_party"],
            platform_share_bps=values["platform_share_bps"],
            platform_minor=values["platform_minor"],
            merchant_minor=values["merchant_minor"],
        ),
    )


@in_store.post("/redemptions", status_code=201)
async def redeem(
    body: InStoreRedeemRequest, merchant_id: MerchantDep, uow: UowDep, now: NowDep, response: Response
) -> RedemptionResponse:
    """Redeem (核销) a coupon at the till. The same request_id again returns the first redemption (200)."""
    async with uow.begin() as tx:
        row, created = await flow.redeem_in_store(
            tx, code=_code(body), request_id=body.request_id, ctx=_context(body, merchant_id), now=now
        )
    if not created:
        response.status_code = 200
    return redemption_response(row)


@in_store.post("/redemptions/{redemption_id}/undo")
async def undo(
    redemption_id: Id, merchant_id: MerchantDep, uow: UowDep, context: MarketingContextDep, now: NowDep
) -> RedemptionResponse:
    """Take back an in-store redemption within `in_store_undo_seconds`; the coupon is available again."""
    window = context.settings.in_store_undo_seconds
    async with uow.begin() as tx:
        row = await flow.undo_in_store(
            tx, redemption_id=redemption_id, merchant_id=merchant_id, now=now, window_seconds=window
        )
    return redemption_response(row)
