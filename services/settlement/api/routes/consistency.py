"""The settlement ↔ ledger consistency check for operators (platform only; docs/consistency.md)."""

from __future__ import annotations

from fastapi import APIRouter

from libs.common.web import UowDep
from services.settlement.api.deps import LedgerDep, PlatformOnly, SettingsDep
from services.settlement.api.schemas import ConsistencyResponse
from services.settlement.flows import consistency

router = APIRouter(prefix="/v1/settlement/consistency", tags=["consistency"], dependencies=[PlatformOnly])


@router.get("")
async def latest_check(uow: UowDep) -> ConsistencyResponse:
    """The latest stored result (the worker's periodic check, or the last run asked for)."""
    return ConsistencyResponse.model_validate(await consistency.latest(uow))


@router.post("/runs")
async def run_check(uow: UowDep, ledger: LedgerDep, settings: SettingsDep) -> ConsistencyResponse:
    """Run the check now and answer its result; 503 ledger_unavailable when the ledger cannot be read."""
    return ConsistencyResponse.model_validate(await consistency.run_check(uow, ledger, settings))
