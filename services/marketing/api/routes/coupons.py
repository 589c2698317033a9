"""Users claim and list their coupons (`/v1/marketing/me`); operators and owners bulk-issue to a list."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy import select

from libs.common.errors import VALIDATION_FAILED, Problem
from libs.common.paging import KnownQueryOnly
from libs.common.web import UowDep
from services.marketing.api.deps import CouponCursor, ManagerDep, MarketingContextDep, NowDep, PageLimit, UserDep
from services.marketing.api.schemas import (
    BulkIssueCreateRequest,
    BulkIssueResponse,
    ClaimCreateRequest,
    CouponListResponse,
    CouponResponse,
)
from services.marketing.domain.errors import BULK_ISSUE_NOT_FOUND, COUPON_NOT_FOUND, STOCK_NOT_FOUND
from services.marketing.flows import channel_coupons, claims
from services.marketing.store import coupons as coupon_store
from services.marketing.store import stocks as stock_store
from services.marketing.store.tables import bulk_issues

router = APIRouter(prefix="/v1/marketing", tags=["coupons"])
Id = Annotated[str, Path(max_length=64)]
QR_PREFIX = "JUHECPN1:"
CouponStatus = Annotated[Literal["available", "locked", "used"] | None, Query()]


def coupon_response(row: Any, channel: dict[str, Any] | None = None) -> CouponResponse:
    body = {k: row[k] for k in CouponResponse.model_fields if k not in ("qr_payload", "channel")}
    return CouponResponse.model_validate({**body, "qr_payload": QR_PREFIX + row["code"], "channel": channel})


@router.post("/me/claims", status_code=201)
async def claim_coupon(
    body: ClaimCreateRequest, who: UserDep, uow: UowDep, context: MarketingContextDep, now: NowDep, response: Response
) -> CouponResponse:
    """Claim one coupon of a running stock. The same request_id again returns the first coupon (200)."""
    assert who.user_id is not None
    tz = context.settings.day_timezone
    async with uow.begin() as tx:
        row, created = await claims.claim(
            tx,
            stock_id=body.stock_id,
            user_id=who.user_id,
            request_id=body.request_id,
            source="claim",
            now=now,
            day_timezone=tz,
            channel_user=body.channel_user,
        )
    if not created:
        response.status_code = 200
    # A channel stock's coupon is sent now (an outage leaves it pending for the worker); re-read, it may have changed.
    mirrored = await channel_coupons.send(uow, context.cashier, row["coupon_id"])
    if mirrored is not None:
        async with uow.read() as conn:
            row = await coupon_store.get_coupon(conn, row["coupon_id"]) or row
    return coupon_response(row, channel_coupons.view(mirrored))


@router.get("/me/coupons", dependencies=[KnownQueryOnly])
async def my_coupons(
    who: UserDep, uow: UowDep, limit: PageLimit, cursor: CouponCursor = None, status: CouponStatus = None
) -> CouponListResponse:
    """The user's coupons newest first, in the one list shape (libs.common.paging)."""
    assert who.user_id is not None
    async with uow.read() as conn:
        rows = await coupon_store.list_user_coupons(conn, who.user_id, status=status, before_id=cursor, limit=limit + 1)
    return CouponListResponse.of(rows, limit, item=coupon_response, cursor_of=lambda c: c.coupon_id)


@router.get("/me/coupons/{coupon_id}")
async def my_coupon(coupon_id: Id, who: UserDep, uow: UowDep) -> CouponResponse:
    async with uow.read() as conn:
        row = await coupon_store.get_coupon(conn, coupon_id)
        mirrored = await channel_coupons.get(conn, coupon_id)
    if row is None or row["user_id"] != who.user_id:
        raise Problem(COUPON_NOT_FOUND, f"no coupon {coupon_id}")
    return coupon_response(row, channel_coupons.view(mirrored))


async def _bulk_response(conn: Any, job: Any) -> BulkIssueResponse:
    progress = await claims.bulk_progress(conn, job["bulk_issue_id"])
    return BulkIssueResponse(
        bulk_issue_id=job["bulk_issue_id"],
        stock_id=job["stock_id"],
        request_id=job["request_id"],
        total_count=job["total_count"],
        pending_count=progress["pending"],
        issued_count=progress["issued"],
        failed_count=progress["failed"],
        done=progress["pending"] == 0,
        created_at=job["created_at"],
    )


@router.post("/stocks/{stock_id}/bulk-issues", status_code=202)
async def bulk_issue(
    stock_id: Id,
    body: BulkIssueCreateRequest,
    who: ManagerDep,
    uow: UowDep,
    context: MarketingContextDep,
    response: Response,
) -> BulkIssueResponse:
    """Issue one coupon to each listed user, in the background (bounded rounds; resumable after a crash);
    poll the returned job for progress. Each user's claim obeys the stock's budget and limits."""
    users_max = context.settings.bulk_issue_users_max
    if len(body.user_ids) > users_max:
        raise Problem(VALIDATION_FAILED, f"at most {users_max} users per bulk issue", user_ids_max=users_max)
    async with uow.begin() as tx:
        if await stock_store.get_stock(tx.conn, stock_id, who.owner_scope) is None:
            raise Problem(STOCK_NOT_FOUND, f"no stock {stock_id}")
        job, created = await claims.create_bulk_issue(
            tx,
            stock_id=stock_id,
            user_ids=body.user_ids,
            request_id=body.request_id,
            requested_by=who.merchant_id or "platform",
        )
        if not created:
            response.status_code = 200
        return await _bulk_response(tx.conn, job)


@router.get("/stocks/{stock_id}/bulk-issues/{bulk_issue_id}")
async def get_bulk_issue(stock_id: Id, bulk_issue_id: Id, who: ManagerDep, uow: UowDep) -> BulkIssueResponse:
    async with uow.read() as conn:
        if await stock_store.get_stock(conn, stock_id, who.owner_scope) is None:
            raise Problem(STOCK_NOT_FOUND, f"no stock {stock_id}")
        b = bulk_issues.c
        query = select(bulk_issues).where(b.bulk_issue_id == bulk_issue_id, b.stock_id == stock_id)
        job = (await conn.execute(query)).mappings().first()
        if job is None:
            raise Problem(BULK_ISSUE_NOT_FOUND, f"no bulk issue {bulk_issue_id}")
        return await _bulk_response(conn, job)
