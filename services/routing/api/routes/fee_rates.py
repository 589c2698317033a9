"""Admin API for fee rates (/v1/fee-rates). Rates are immutable except for their end date."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from libs.common.ids import new_id
from libs.common.paging import PageLimit
from libs.common.web import UowDep
from services.routing.api.deps import ActorDep
from services.routing.api.schemas import (
    FeeRateCreateRequest,
    FeeRateExpireRequest,
    FeeRateListResponse,
    FeeRateResponse,
)
from services.routing.store import config as store

router = APIRouter(prefix="/v1/fee-rates", tags=["fee rates"])


@router.post("", status_code=201)
async def create_fee_rate(body: FeeRateCreateRequest, uow: UowDep, actor: ActorDep) -> FeeRateResponse:
    async with uow.begin() as tx:
        stored = await store.create_fee_rate(tx, body.to_domain(new_id("fr")), actor=actor)
    return FeeRateResponse.of(stored.rate, stored.version)


@router.get("")
async def list_fee_rates(
    uow: UowDep,
    limit: PageLimit,
    route_id: str | None = None,
    merchant_id: str | None = None,
    after: str | None = None,
) -> FeeRateListResponse:
    async with uow.read() as conn:
        rates = await store.list_fee_rates(conn, route_id=route_id, merchant_id=merchant_id, after=after, limit=limit)
    cursor = rates[-1].rate.rate_id if len(rates) == limit else None
    return FeeRateListResponse(items=[FeeRateResponse.of(r.rate, r.version) for r in rates], next_cursor=cursor)


@router.get("/{rate_id}")
async def get_fee_rate(rate_id: str, uow: UowDep) -> FeeRateResponse:
    async with uow.read() as conn:
        stored = await store.get_fee_rate(conn, rate_id)
    return FeeRateResponse.of(stored.rate, stored.version)


@router.post("/{rate_id}/expire")
async def expire_fee_rate(rate_id: str, body: FeeRateExpireRequest, uow: UowDep, actor: ActorDep) -> FeeRateResponse:
    async with uow.begin() as tx:
        stored = await store.expire_fee_rate(
            tx,
            rate_id,
            valid_until=body.valid_until,
            expected_version=body.expected_version,
            actor=actor,
            now=datetime.now(UTC),
        )
    return FeeRateResponse.of(stored.rate, stored.version)
