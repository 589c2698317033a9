"""Admin API for merchant contracts (/v1/contracts): which routes a merchant may use, and as whom."""

from __future__ import annotations

from fastapi import APIRouter

from libs.common.paging import PageLimit
from libs.common.web import UowDep
from services.routing.api.deps import ActorDep
from services.routing.api.schemas import ContractListResponse, ContractPutRequest, ContractResponse
from services.routing.store import config as store

router = APIRouter(prefix="/v1/contracts", tags=["contracts"])


@router.put("/{merchant_id}/{route_id}")
async def put_contract(
    merchant_id: str, route_id: str, body: ContractPutRequest, uow: UowDep, actor: ActorDep
) -> ContractResponse:
    async with uow.begin() as tx:
        contract = await store.put_contract(
            tx, body.to_domain(merchant_id, route_id), expected_version=body.expected_version, actor=actor
        )
    return ContractResponse.of(contract)


@router.get("/{merchant_id}/{route_id}")
async def get_contract(merchant_id: str, route_id: str, uow: UowDep) -> ContractResponse:
    async with uow.read() as conn:
        return ContractResponse.of(await store.get_contract(conn, merchant_id, route_id))


@router.get("")
async def list_contracts(
    uow: UowDep,
    limit: PageLimit,
    merchant_id: str | None = None,
    route_id: str | None = None,
    after: str | None = None,
) -> ContractListResponse:
    async with uow.read() as conn:
        items = await store.list_contracts(conn, merchant_id=merchant_id, route_id=route_id, after=after, limit=limit)
    cursor = f"{items[-1].merchant_id}/{items[-1].route_id}" if len(items) == limit else None
    return ContractListResponse(items=[ContractResponse.of(c) for c in items], next_cursor=cursor)
