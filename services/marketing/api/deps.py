"""Request dependencies: who the caller is (from the gateway's signed identity), page sizes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request

from libs.common.errors import FORBIDDEN, Problem
from libs.common.internal_auth import DEV_MERCHANT_HEADER, IDENTITY_HEADER, internal_identity
from libs.common.paging import cursor_query, page_limit
from libs.common.web import get_runtime
from services.marketing.context import MarketingContext, marketing_context
from services.marketing.domain.actors import Actor


def actor(request: Request) -> Actor:
    """The caller as marketing sees it; an identity is required (requests come through the gateway)."""
    identity = internal_identity(request)
    if identity.kind == "user":
        return Actor("user", merchant_id=identity.merchant_id, user_id=identity.user)
    if identity.kind == "platform":
        return Actor("operator", merchant_id=identity.merchant_id)
    if identity.kind == "merchant":
        return Actor("merchant", merchant_id=identity.merchant_id)
    return Actor("service")


def manager(who: Annotated[Actor, Depends(actor)]) -> Actor:
    """Operators and merchants manage campaigns and stocks (merchants their own); others are refused."""
    if who.kind not in ("operator", "merchant"):
        raise Problem(FORBIDDEN, f"a {who.kind} identity may not manage campaigns")
    return who


def operator(who: Annotated[Actor, Depends(actor)]) -> Actor:
    if who.kind != "operator":
        raise Problem(FORBIDDEN, "only platform operators may do this")
    return who


def user(who: Annotated[Actor, Depends(actor)]) -> Actor:
    if who.kind != "user" or not who.user_id:
        raise Problem(FORBIDDEN, "this endpoint is for end users")
    return who


def merchant(who: Annotated[Actor, Depends(actor)]) -> str:
    """The merchant whose staff is at the till (an operator acting for a merchant counts as that merchant)."""
    if who.kind not in ("merchant", "operator") or not who.merchant_id:
        raise Problem(FORBIDDEN, "in-store redemption needs a merchant identity")
    return who.merchant_id


def services_only(request: Request) -> None:
    """`/v1/internal` (never routed by the gateway): refused to merchant and user identities, as a second
    wall behind the gateway's own."""
    if IDENTITY_HEADER not in request.headers and DEV_MERCHANT_HEADER not in request.headers:
        return
    identity = internal_identity(request)
    if identity.kind in ("merchant", "user"):
        raise Problem(FORBIDDEN, f"a {identity.kind} identity may not call marketing's internal API")


ManagerDep = Annotated[Actor, Depends(manager)]
OperatorDep = Annotated[Actor, Depends(operator)]
UserDep = Annotated[Actor, Depends(user)]
MerchantDep = Annotated[str, Depends(merchant)]
ServicesOnly = Depends(services_only)

# Bounded by the `page_size_max` setting (libs.common.paging: over it is 422 with `limit_max`).
PageLimit = Annotated[int, Depends(page_limit(50))]


def id_cursor(*prefixes: str) -> Any:
    """The `cursor` of a list paged by ids made with one of `prefixes` (libs.common.ids; a migrated row's id
    keeps the prefix with `_mig_`): anything else is 422, nothing read."""
    return cursor_query(rf"^({'|'.join(prefixes)})_[0-9a-z_]+$")


# The ids each list pages by: what `next_cursor` gives out (a payment id for what a payment earned).
CampaignCursor = Annotated[str | None, id_cursor("cmp")]
StockCursor = Annotated[str | None, id_cursor("cps", "stk")]
CouponCursor = Annotated[str | None, id_cursor("cpn")]
RuleCursor = Annotated[str | None, id_cursor("ptr")]
PromotionCursor = Annotated[str | None, id_cursor("tpp")]
PaymentCursor = Annotated[str | None, cursor_query(r"^[A-Za-z0-9_\-:.]{1,64}$")]


async def get_context(request: Request) -> MarketingContext:
    """The service's typed context (context.py). Async on purpose: FastAPI runs a plain `def` dependency in its
    thread pool."""
    return marketing_context(get_runtime(request))


MarketingContextDep = Annotated[MarketingContext, Depends(get_context)]


async def clock(context: MarketingContextDep) -> datetime:
    """Now, by the service's clock (`MarketingContext.clock`)."""
    return context.clock()


NowDep = Annotated[datetime, Depends(clock)]
