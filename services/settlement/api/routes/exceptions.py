"""Reconciliation exceptions pool: every unresolved mismatch as a work item (assign, re-query, resolve)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy.engine import RowMapping

from libs.common.paging import KnownQueryOnly, cursor_query
from libs.common.web import UowDep
from services.settlement.api.deps import CashierDep, PageLimit, PlatformOnly
from services.settlement.api.exception_schemas import (
    ExceptionActionResponse,
    ExceptionAssignRequest,
    ExceptionListResponse,
    ExceptionRequeryRequest,
    ExceptionResolveRequest,
    ExceptionResponse,
)
from services.settlement.domain.exceptions import STATE_FILTERS, ageing_bucket
from services.settlement.domain.reconciliation import Outcome
from services.settlement.flows import exceptions as flow
from services.settlement.store import exceptions as store

router = APIRouter(
    prefix="/v1/settlement/reconciliation-exceptions", tags=["reconciliation"], dependencies=[PlatformOnly]
)

StateFilter = Query(pattern=f"^({'|'.join(STATE_FILTERS)})$")
FilterText = Query(min_length=1, max_length=64)


def _response(row: RowMapping, actions: list[RowMapping] | None = None) -> ExceptionResponse:
    fields: dict[str, Any] = {k: row[k] for k in ExceptionResponse.model_fields if k in row}
    age = max(int(row["age_seconds"] or 0), 0)
    trail = None
    if actions is not None:
        trail = [ExceptionActionResponse(**{k: a[k] for k in ExceptionActionResponse.model_fields}) for a in actions]
    return ExceptionResponse(**fields | {"age_seconds": age, "ageing": ageing_bucket(age), "actions": trail})


@router.get("", dependencies=[KnownQueryOnly])
async def list_exceptions(
    uow: UowDep,
    limit: PageLimit,
    state: Annotated[str, StateFilter] = "unresolved",
    assignee: Annotated[str | None, FilterText] = None,
    channel: Annotated[str | None, FilterText] = None,
    merchant_id: Annotated[str | None, FilterText] = None,
    outcome: Outcome | None = None,
    cursor: Annotated[str | None, cursor_query(r"^[0-9]{1,18}$")] = None,
) -> ExceptionListResponse:
    """Oldest first (the longest-waiting mismatch on top); each day's latest finished run only."""
    async with uow.read() as conn:
        rows = await store.list_pool(
            conn,
            state=state,
            assignee=assignee,
            channel=channel,
            merchant_id=merchant_id,
            outcome=outcome,
            after_id=int(cursor or 0),
            limit=limit + 1,
        )
    return ExceptionListResponse.of(rows, limit, item=_response, cursor_of=lambda e: str(e.item_id))


@router.get("/{item_id}")
async def get_exception(item_id: int, uow: UowDep) -> ExceptionResponse:
    """One exception with its trail (who assigned, re-queried with the channel's answer, resolved)."""
    row, actions = await flow.detail(uow, item_id)
    return _response(row, actions)


@router.post("/{item_id}/assign")
async def assign_exception(item_id: int, body: ExceptionAssignRequest, uow: UowDep) -> ExceptionResponse:
    await flow.assign(uow, item_id, assignee=body.assignee, actor=body.actor)
    return await get_exception(item_id, uow)


@router.post("/{item_id}/requery")
async def requery_exception(
    item_id: int, body: ExceptionRequeryRequest, uow: UowDep, cashier: CashierDep
) -> ExceptionResponse:
    """The cashier asks the channel again about the payment (a real late success becomes `succeeded` there);
    the answer is kept on the item (`last_requery`). 503 `cashier_unavailable`: nothing recorded, retry."""
    await flow.requery(uow, cashier, item_id, actor=body.actor)
    return await get_exception(item_id, uow)


@router.post("/{item_id}/resolve")
async def resolve_exception(item_id: int, body: ExceptionResolveRequest, uow: UowDep) -> ExceptionResponse:
    await flow.resolve(uow, item_id, reason=body.reason, actor=body.actor)
    return await get_exception(item_id, uow)
