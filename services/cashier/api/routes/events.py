"""The merchant's events: every event its webhooks carry (sent or not), to catch up on a missed delivery."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from libs.common.errors import NOT_FOUND, VALIDATION_FAILED, Problem
from libs.common.paging import KnownQueryOnly, ListPage, cursor_query
from services.cashier.api.deps import Caller, CashierDep, MerchantId, PageSize
from services.cashier.domain.webhook_endpoints import EVENT_TYPES
from services.cashier.store.webhook_endpoints import get_event, list_events

router = APIRouter(prefix="/v1/events", tags=["webhooks"])

CURSOR_DIGITS_MAX = 18  # a BIGINT sequence value; anything longer is not a cursor this API gave out


class EventResponse(BaseModel):
    """Exactly the body of the webhook that carried (or would carry) the event."""

    id: str
    type: str
    # As the webhook carried it (ISO 8601 with offset), not re-formatted: the two bodies compare equal.
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    livemode: bool = Field(description="The event's payment is live; false: test (docs/test-mode.md)")
    data: dict[str, Any]


class EventList(ListPage[EventResponse]):
    """Oldest first; the cursor is the last event's sequence number (not part of the event's body)."""


def _types(types: list[str] | None) -> list[str] | None:
    unknown = sorted(set(types or ()) - set(EVENT_TYPES))
    if unknown:
        raise Problem(VALIDATION_FAILED, f"unknown event types {unknown}; known: {list(EVENT_TYPES)}", field="type")
    return types or None


@router.get("", dependencies=[KnownQueryOnly])
async def list_all(
    merchant_id: MerchantId,
    caller: Caller,
    cashier: CashierDep,
    limit: PageSize,
    cursor: Annotated[str | None, cursor_query(rf"^[0-9]{{1,{CURSOR_DIGITS_MAX}}}$")] = None,
    type: Annotated[
        list[str] | None, Query(description=f"One or more of {list(EVENT_TYPES)} (repeat the parameter for several)")
    ] = None,
    created_gte: datetime | None = None,
    created_lt: datetime | None = None,
) -> EventList:
    types = _types(type)
    if created_gte is not None and created_lt is not None and created_gte >= created_lt:
        raise Problem(VALIDATION_FAILED, "created_gte must be before created_lt", field="created_gte")
    async with cashier.uow.read() as conn:
        rows = await list_events(
            conn,
            merchant_id=merchant_id,
            limit=limit + 1,
            after_seq=int(cursor) if cursor is not None else None,
            types=types,
            created_gte=created_gte,
            created_lt=created_lt,
            livemode=cashier.livemode_filter(caller),  # a test key lists test events only, a live key live ones
        )
    page = rows[:limit]
    has_more = len(rows) > limit
    return EventList(
        data=[EventResponse.model_validate(r.payload) for r in page],
        has_more=has_more,
        next_cursor=str(page[-1].seq) if has_more else None,
    )


@router.get("/{event_id}")
async def read(event_id: str, merchant_id: MerchantId, caller: Caller, cashier: CashierDep) -> EventResponse:
    async with cashier.uow.read() as conn:
        row = await get_event(conn, merchant_id=merchant_id, event_id=event_id)
    if row is None or cashier.livemode_filter(caller) not in (None, row.livemode):
        raise Problem(NOT_FOUND, f"event {event_id} does not exist")
    return EventResponse.model_validate(row.payload)
