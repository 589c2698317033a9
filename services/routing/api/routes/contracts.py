"""Admin API for merchant contracts (/v1/contracts): which routes a merchant may use, and as whom."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from libs.common.paging import KnownQueryOnly, PageLimit, cursor_query
from libs.common.web import UowDep
from services.routing.api.deps import ActorDep
from services.routing.api.schemas import ContractListResponse, ContractPutRequest, ContractResponse
from services.routing.store import contracts as store

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


CONTRACT_CURSOR = r"^[^/]{1,64}/[a-z0-9][a-z0-9_\-]{0,63}$"  # "<merchant_id>/<route_id>"


@router.get("", dependencies=[KnownQueryOnly])
async def list_contracts(
    uow: UowDep,
    limit: PageLimit,
    merchant_id: Annotated[str | None, Query(max_length=64)] = None,
    route_id: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, cursor_query(CONTRACT_CURSOR)] = None,
) -> ContractListResponse:
    """Contracts by merchant, then route."""
    async with uow.read() as conn:
        rows = await store.list_contracts(
            conn, merchant_id=merchant_id, route_id=route_id, after=cursor, limit=limit + 1
        )
    return ContractListResponse.of(
        rows, limit, item=ContractResponse.of, cursor_of=lambda c: f"{c.merchant_id}/{c.route_id}"
    )
