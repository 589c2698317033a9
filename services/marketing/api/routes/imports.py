"""Imports for services/migration (`/v1/internal/marketing/imports`, never routed by the gateway): a
platform's existing unused coupons, and voiding them when the migration run is reversed."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from libs.common.errors import FORBIDDEN, Problem
from libs.common.internal_auth import internal_identity
from libs.common.web import UowDep
from services.marketing.api.deps import NowDep
from services.marketing.api.schemas import (
    CouponImportRequest,
    CouponImportResponse,
    CouponImportResult,
    CouponVoidRequest,
    CouponVoidResponse,
)
from services.marketing.flows import imports as flow

MIGRATION_SERVICE = "migration"


def migration_only(request: Request) -> None:
    """Only the migration service's signed identity: these calls write coupons for any user."""
    identity = internal_identity(request)
    if identity.kind != "service" or identity.service != MIGRATION_SERVICE:
        raise Problem(FORBIDDEN, "only the migration service may import coupons")


router = APIRouter(prefix="/v1/internal/marketing/imports", tags=["imports"], dependencies=[Depends(migration_only)])


@router.post("/coupons")
async def import_coupons(body: CouponImportRequest, uow: UowDep, now: NowDep) -> CouponImportResponse:
    """A batch (≤ 1000) of one run's coupons: one result per item, created | duplicate | rejected (reason).
    Idempotent by (run_id, source_id): the same batch again answers `duplicate` and writes nothing."""
    items = [flow.ImportedCoupon(**c.model_dump()) for c in body.coupons]
    async with uow.begin() as tx:
        results = await flow.import_coupons(tx, body.run_id, items, now)
    return CouponImportResponse(
        run_id=body.run_id,
        results=[
            CouponImportResult(
                source_id=r.source_id, status=r.status, coupon_id=r.coupon_id, reason=r.reason, detail=r.detail
            )
            for r in results
        ],
    )


@router.post("/coupons/void")
async def void_coupons(body: CouponVoidRequest, uow: UowDep) -> CouponVoidResponse:
    """Voids up to `limit` of the run's coupons still unused; call again while `remaining_count` > 0.
    Coupons used (or locked by a payment) cannot be voided: `used_count` and their face value say how many."""
    async with uow.begin() as tx:
        outcome = await flow.void_coupons(tx, body.run_id, body.limit)
    return CouponVoidResponse(
        run_id=body.run_id,
        voided_count=outcome.voided_count,
        voided_total=outcome.voided_total,
        used_count=outcome.used_count,
        used_face_value_minor=outcome.used_face_value_minor,
        remaining_count=outcome.remaining_count,
    )
