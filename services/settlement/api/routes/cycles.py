"""Settlement cycles, the business-day calendar, settlement runs and batches (platform-only /v1/settlement)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert

from libs.common.internal_auth import CallerLivemode
from libs.common.paging import KnownQueryOnly
from libs.common.web import UowDep
from services.settlement.api.deps import BatchCursor, LedgerDep, PageLimit, PlatformOnly, SettingsDep
from services.settlement.api.schemas import (
    BatchListResponse,
    CalendarDayRequest,
    CalendarDayResponse,
    CalendarResponse,
    CalendarScheduleDay,
    CalendarScheduleResponse,
    CycleResponse,
    CycleUpsertRequest,
    SettlementRunRequest,
    SettlementRunResponse,
    batch_page,
)
from services.settlement.domain.cycles import DEFAULT_CYCLE, DEFAULT_TIMEZONE, Cycle, CycleKind, settle_date
from services.settlement.flows.settle import run_cycle
from services.settlement.store import cycles
from services.settlement.store.tables import calendar_days, merchant_cycles

router = APIRouter(prefix="/v1/settlement", tags=["settlement"], dependencies=[PlatformOnly])
CALENDAR_PAGE_MAX = 400


@router.put("/merchants/{holder_id}/cycle")
async def put_cycle(holder_id: str, body: CycleUpsertRequest, uow: UowDep) -> CycleResponse:
    """The cycle applies to payments that succeed from now on (their settle date is fixed at success)."""
    cutoff = time.fromisoformat(body.cutoff)
    Cycle(CycleKind(body.kind), days=body.days, weekday=body.weekday, cutoff=cutoff)  # domain check
    values = {"kind": body.kind, "days": body.days, "weekday": body.weekday, "cutoff": cutoff}
    async with uow.begin() as tx:
        await tx.conn.execute(
            insert(merchant_cycles)
            .values(holder_id=holder_id, **values)
            .on_conflict_do_update(
                index_elements=[merchant_cycles.c.holder_id], set_={**values, "updated_at": func.now()}
            )
        )
    return CycleResponse(
        holder_id=holder_id, kind=body.kind, days=body.days, weekday=body.weekday, cutoff=cutoff.isoformat()
    )


@router.get("/merchants/{holder_id}/cycle")
async def get_cycle(holder_id: str, uow: UowDep) -> CycleResponse:
    async with uow.read() as conn:
        cycle = await cycles.cycle_of(conn, holder_id)
    return CycleResponse(
        holder_id=holder_id,
        kind=cycle.kind.value,
        days=cycle.days,
        weekday=cycle.weekday,
        cutoff=cycle.cutoff.isoformat(),
    )


@router.put("/calendar/{day}")
async def put_calendar_day(day: date, body: CalendarDayRequest, uow: UowDep) -> CalendarDayResponse:
    """Mark a public holiday (`business_day: false`) or a make-up workday (`true`)."""
    async with uow.begin() as tx:
        await tx.conn.execute(
            insert(calendar_days)
            .values(day=day, **body.model_dump())
            .on_conflict_do_update(index_elements=[calendar_days.c.day], set_=body.model_dump())
        )
    return CalendarDayResponse(day=day, **body.model_dump())


@router.delete("/calendar/{day}", status_code=204)
async def delete_calendar_day(day: date, uow: UowDep) -> Response:
    async with uow.begin() as tx:
        await tx.conn.execute(delete(calendar_days).where(calendar_days.c.day == day))
    return Response(status_code=204)


@router.get("/calendar", dependencies=[KnownQueryOnly])
async def get_calendar(uow: UowDep, year: Annotated[int, Query(ge=2000, le=2100)]) -> CalendarResponse:
    async with uow.read() as conn:
        rows = await conn.execute(
            select(calendar_days)
            .where(calendar_days.c.day >= date(year, 1, 1), calendar_days.c.day <= date(year, 12, 31))
            .order_by(calendar_days.c.day)
            .limit(CALENDAR_PAGE_MAX)
        )
        days = [CalendarDayResponse(day=r.day, business_day=r.business_day, name=r.name) for r in rows]
    return CalendarResponse(data=days, has_more=False)


@router.get("/calendar/schedule", dependencies=[KnownQueryOnly])
async def get_calendar_schedule(
    uow: UowDep,
    month: Annotated[str, Query(pattern=r"^20[0-9]{2}-(0[1-9]|1[0-2])$", description="YYYY-MM")],
    holder_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> CalendarScheduleResponse:
    """Each day of a month: whether it is a business day (and the holiday or make-up workday's name), and the day
    on which a payment traded that day (before the cutoff) is settled under the holder's cycle (the default cycle
    without a holder). Computed by the same `settle_date` the consumers fix at success, so the page and the money
    agree."""
    first = date.fromisoformat(f"{month}-01")
    following = (first + timedelta(days=32)).replace(day=1)
    async with uow.read() as conn:
        cycle = await cycles.cycle_of(conn, holder_id) if holder_id else DEFAULT_CYCLE
        calendar = await cycles.calendar(conn)
        names = {
            r.day: r.name
            for r in await conn.execute(
                select(calendar_days.c.day, calendar_days.c.name).where(
                    calendar_days.c.day >= first, calendar_days.c.day < following
                )
            )
        }
    days = []
    for offset in range((following - first).days):
        day = first + timedelta(days=offset)
        midnight = datetime.combine(day, time.min, tzinfo=DEFAULT_TIMEZONE)
        days.append(
            CalendarScheduleDay(
                day=day,
                business_day=calendar.is_business_day(day),
                name=names.get(day, ""),
                settle_date=settle_date(midnight, cycle, calendar),
            )
        )
    return CalendarScheduleResponse(
        month=month,
        holder_id=holder_id,
        cycle=CycleResponse(
            holder_id=holder_id or "",
            kind=cycle.kind.value,
            days=cycle.days,
            weekday=cycle.weekday,
            cutoff=cycle.cutoff.isoformat(),
        ),
        days=days,
    )


@router.post("/runs")
async def start_settlement_run(
    body: SettlementRunRequest, uow: UowDep, ledger: LedgerDep, settings: SettingsDep
) -> SettlementRunResponse:
    """Run a cycle day now (the worker does it on its own every `settlement_interval_seconds`). Safe to repeat."""
    result = await run_cycle(uow, ledger, settings, body.cycle_date)
    return SettlementRunResponse(
        cycle_date=result.cycle_date,
        batches_built=result.batches_built,
        batches_posted=result.batches_posted,
        batches_failed=result.batches_failed,
    )


@router.get("/batches", dependencies=[KnownQueryOnly])
async def list_batches(
    uow: UowDep,
    limit: PageLimit,
    livemode: CallerLivemode,
    holder_id: Annotated[str | None, Query(max_length=64)] = None,
    cursor: BatchCursor = None,
) -> BatchListResponse:
    """Every holder's settlement batches (or one holder's), newest first; of one mode with `livemode`, else both
    (each batch marked)."""
    async with uow.read() as conn:
        rows = await cycles.batches_page(conn, holder_id, cursor, limit + 1, livemode=livemode)
    return batch_page(rows, limit)
