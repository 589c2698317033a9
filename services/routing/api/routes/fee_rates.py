"""Admin API for fee rates (/v1/fee-rates). Rates are immutable except for their end date."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from libs.common.ids import new_id
from libs.common.paging import KnownQueryOnly, PageLimit, cursor_query
from libs.common.web import UowDep
from services.routing.api.deps import ActorDep
from services.routing.api.schemas import (
    FeeRateCreateRequest,
    FeeRateExpireRequest,
    FeeRateListResponse,
    FeeRateResponse,
)
from services.routing.store import fee_rates as store

router = APIRouter(prefix="/v1/fee-rates", tags=["fee rates"])


@router.post("", status_code=201)
async def create_fee_rate(body: FeeRateCreateRequest, uow: UowDep, actor: ActorDep) -> FeeRateResponse:
    async with uow.begin() as tx:
        stored = await store.create_fee_rate(tx, body.to_domain(new_id("fr")), actor=actor)
    return FeeRateResponse.of(stored.rate, stored.version)


@router.get("", dependencies=[KnownQueryOnly])
async def list_fee_rates(
    uow: UowDep,
    limit: PageLimit,
    route_id: Annotated[str | None, Query(max_length=64)] = None,
    merchant_id: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, cursor_query(r"^fr_[0-9a-z]+$")] = None,
) -> FeeRateListResponse:
    """Fee rates by rate id, optionally of one route or one merchant."""
    async with uow.read() as conn:
        rates = await store.list_fee_rates(
            conn, route_id=route_id, merchant_id=merchant_id, after=cursor, limit=limit + 1
        )
    return FeeRateListResponse.of(
        rates, limit, item=lambda r: FeeRateResponse.of(r.rate, r.version), cursor_of=lambda r: r.rate_id
    )


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
