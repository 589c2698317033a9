"""Reconciliation: start a run, read it, list its items by outcome / payment order / business order, day report."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from libs.common.errors import Problem
from libs.common.internal_auth import caller_livemode
from libs.common.paging import KnownQueryOnly, cursor_query
from libs.common.web import UowDep
from services.settlement.api.deps import CashierDep, LedgerDep, PageLimit, PlatformOnly, SettingsDep
from services.settlement.api.schemas import (
    ReconciliationItemListResponse,
    ReconciliationItemResponse,
    ReconciliationRunRequest,
    ReconciliationRunResponse,
)
from services.settlement.domain.errors import RECONCILIATION_NOT_FOUND
from services.settlement.domain.reconciliation import Outcome
from services.settlement.flows.reconcile import reconcile
from services.settlement.store import reconciliation as store

router = APIRouter(prefix="/v1/settlement", tags=["reconciliation"], dependencies=[PlatformOnly])


def _run(row: Any) -> ReconciliationRunResponse:
    return ReconciliationRunResponse(**{k: row[k] for k in ReconciliationRunResponse.model_fields})


@router.post("/reconciliations", status_code=201)
async def start_reconciliation(
    body: ReconciliationRunRequest,
    uow: UowDep,
    cashier: CashierDep,
    ledger: LedgerDep,
    settings: SettingsDep,
    request: Request,
) -> ReconciliationRunResponse:
    """Classify the day's bill and post the channel's settlement to escrow (§3.5); `error` on a finished
    run says the posting could not be made (running the day again retries it under the same key)."""
    livemode = await caller_livemode(request, body.livemode)  # a key's mode, else the body's, else the bill's
    run_id = await reconcile(
        uow,
        cashier,
        settings,
        channel=body.channel,
        merchant_id=body.merchant_id,
        bill_date=body.bill_date,
        ledger=ledger,
        livemode=livemode,
    )
    return await get_reconciliation(run_id, uow)


@router.get("/reconciliations/{run_id}")
async def get_reconciliation(run_id: str, uow: UowDep) -> ReconciliationRunResponse:
    async with uow.read() as conn:
        row = await store.get_run(conn, run_id)
    if row is None:
        raise Problem(RECONCILIATION_NOT_FOUND, f"no reconciliation run {run_id}")
    return _run(row)


@router.get("/reconciliation-items", dependencies=[KnownQueryOnly])
async def list_reconciliation_items(
    uow: UowDep,
    limit: PageLimit,
    run_id: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Outcome | None = None,
    payment_id: Annotated[str | None, Query(max_length=64)] = None,
    merchant_order_no: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, cursor_query(r"^[0-9]{1,18}$")] = None,
) -> ReconciliationItemListResponse:
    """Items to look at, by run, outcome, payment order (payment_id) or business order (merchant_order_no)."""
    async with uow.read() as conn:
        rows = await store.list_items(
            conn,
            run_id=run_id,
            outcome=outcome,
            payment_id=payment_id,
            merchant_order_no=merchant_order_no,
            after_id=int(cursor or 0),
            limit=limit + 1,
        )
    return ReconciliationItemListResponse.of(
        rows,
        limit,
        item=lambda r: ReconciliationItemResponse(**{k: r[k] for k in ReconciliationItemResponse.model_fields}),
        cursor_of=lambda i: str(i.item_id),
    )


@router.get("/reconciliation-report")
async def reconciliation_report(uow: UowDep, bill_date: date) -> dict[str, Any]:
    """The day by channel: summed outcome counts and bill lines over that day's finished runs."""
    async with uow.read() as conn:
        runs = await store.runs_of_day(conn, bill_date)
    channels: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run["status"] != "finished":  # a failed or running run's partial figures would count lines twice
            continue
        entry = channels.setdefault(run["channel"], {"runs": 0, "bill_lines": 0, "counts": {}})
        entry["runs"] += 1
        entry["bill_lines"] += int(run["bill_lines"])
        for outcome, n in dict(run["counts"]).items():
            entry["counts"][outcome] = entry["counts"].get(outcome, 0) + int(n)
    return {"bill_date": bill_date.isoformat(), "channels": channels}
