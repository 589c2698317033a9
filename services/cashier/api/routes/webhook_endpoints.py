"""Merchant webhook endpoints: several per merchant, each with the event types it wants and its own secret."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field

from libs.common.errors import Problem
from libs.common.modes import livemode_of
from libs.common.paging import KnownQueryOnly, cursor_query
from services.cashier.api.deps import Caller, CashierDep, MerchantId, PageSizeOrMax, get_cashier, refuse_other_mode
from services.cashier.api.schemas import Url, WebhookDeliveryList, WebhookDeliveryResponse
from services.cashier.domain.errors import WEBHOOK_ENDPOINT_NOT_FOUND
from services.cashier.domain.webhook_endpoints import (
    DESCRIPTION_MAX_CHARS,
    EVENT_TYPES,
    ROTATION_OVERLAP_DEFAULT_SECONDS,
    ROTATION_OVERLAP_MAX_SECONDS,
)
from services.cashier.flows import webhook_endpoints as flows
from services.cashier.flows.context import Cashier
from services.cashier.flows.views import delivery_view
from services.cashier.store.webhook_endpoints import get_endpoint, list_endpoints
from services.cashier.store.webhooks import list_endpoint_deliveries


async def _endpoint_in_mode(
    endpoint_id: str, merchant_id: MerchantId, caller: Caller, cashier: Annotated[Cashier, Depends(get_cashier)]
) -> None:
    """404 for an endpoint of the other mode than the caller's key (docs/test-mode.md)."""
    await refuse_other_mode(
        cashier,
        caller,
        lambda conn: get_endpoint(conn, merchant_id=merchant_id, endpoint_id=endpoint_id),
        Problem(WEBHOOK_ENDPOINT_NOT_FOUND, f"webhook endpoint {endpoint_id} does not exist"),
    )


router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhooks"])
EndpointOfCallersMode = Depends(_endpoint_in_mode)

EventTypes = list[str]
_EVENTS_HELP = f"Event types to receive: any of {list(EVENT_TYPES)}, or ['*'] for every type (also future ones)."


class WebhookEndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url
    enabled_events: EventTypes = Field(min_length=1, max_length=len(EVENT_TYPES) + 1, description=_EVENTS_HELP)
    enabled: bool = True
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX_CHARS)


class WebhookEndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url | None = None
    enabled_events: EventTypes | None = Field(
        default=None, min_length=1, max_length=len(EVENT_TYPES) + 1, description=_EVENTS_HELP
    )
    enabled: bool | None = None
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX_CHARS)


class RotateSecretRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_seconds: int = Field(
        default=ROTATION_OVERLAP_DEFAULT_SECONDS,
        ge=0,
        le=ROTATION_OVERLAP_MAX_SECONDS,
        description="How long the previous secret keeps signing too (both `v1=` entries are sent); 0 = not at all.",
    )


class WebhookEndpointResponse(BaseModel):
    id: str
    url: str
    description: str | None
    enabled_events: list[str]
    enabled: bool
    livemode: bool = Field(description="Receives only live events (made with a live key); false: only test events")
    previous_secret_expires_at: datetime | None  # set during a rotation's overlap window
    created_at: datetime
    updated_at: datetime
    secret: str | None = Field(default=None, description="Only in the answers to create and rotate-secret.")


class WebhookEndpointList(BaseModel):
    data: list[WebhookEndpointResponse]
    has_more: bool = False  # a merchant's endpoints are few (bounded): always one page
    next_cursor: str | None = None


def _response(view: dict[str, Any]) -> WebhookEndpointResponse:
    return WebhookEndpointResponse.model_validate(view)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create(
    body: WebhookEndpointCreate, merchant_id: MerchantId, caller: Caller, cashier: CashierDep
) -> WebhookEndpointResponse:
    """The endpoint has the caller's mode: a test key's endpoint receives test events only."""
    return _response(
        await flows.create_endpoint(
            cashier,
            merchant_id,
            url=body.url,
            enabled_events=body.enabled_events,
            enabled=body.enabled,
            description=body.description,
            livemode=livemode_of(cashier.mode_of(caller)),
        )
    )


@router.get("", dependencies=[KnownQueryOnly])
async def list_all(merchant_id: MerchantId, caller: Caller, cashier: CashierDep) -> WebhookEndpointList:
    async with cashier.uow.read() as conn:
        rows = await list_endpoints(conn, merchant_id=merchant_id, livemode=cashier.livemode_filter(caller))
    return WebhookEndpointList(data=[_response(flows.endpoint_view(r)) for r in rows])


@router.get("/{endpoint_id}", dependencies=[EndpointOfCallersMode])
async def read(endpoint_id: str, merchant_id: MerchantId, cashier: CashierDep) -> WebhookEndpointResponse:
    return _response(await flows.read_endpoint(cashier, merchant_id, endpoint_id))


@router.patch("/{endpoint_id}", dependencies=[EndpointOfCallersMode])
async def change(
    endpoint_id: str, body: WebhookEndpointUpdate, merchant_id: MerchantId, cashier: CashierDep
) -> WebhookEndpointResponse:
    changes = body.model_dump(exclude_unset=True)
    return _response(await flows.change_endpoint(cashier, merchant_id, endpoint_id, changes))


@router.delete("/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[EndpointOfCallersMode])
async def delete(endpoint_id: str, merchant_id: MerchantId, cashier: CashierDep) -> Response:
    await flows.remove_endpoint(cashier, merchant_id, endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{endpoint_id}/rotate-secret", dependencies=[EndpointOfCallersMode])
async def rotate_secret(
    endpoint_id: str, merchant_id: MerchantId, cashier: CashierDep, body: RotateSecretRequest | None = None
) -> WebhookEndpointResponse:
    overlap = (body or RotateSecretRequest()).overlap_seconds
    return _response(await flows.rotate_secret(cashier, merchant_id, endpoint_id, overlap_seconds=overlap))


@router.get("/{endpoint_id}/deliveries", dependencies=[KnownQueryOnly, EndpointOfCallersMode])
async def deliveries(
    endpoint_id: str,
    merchant_id: MerchantId,
    cashier: CashierDep,
    limit: PageSizeOrMax,
    cursor: Annotated[str | None, cursor_query(r"^[0-9]{1,18}$")] = None,
) -> WebhookDeliveryList:
    """The endpoint's deliveries, newest first (each one's attempts: `GET /v1/webhook-deliveries/{id}`)."""
    async with cashier.uow.read() as conn:
        if await get_endpoint(conn, merchant_id=merchant_id, endpoint_id=endpoint_id) is None:
            raise Problem(WEBHOOK_ENDPOINT_NOT_FOUND, f"webhook endpoint {endpoint_id} does not exist")
        rows = await list_endpoint_deliveries(
            conn,
            merchant_id=merchant_id,
            endpoint_id=endpoint_id,
            limit=limit + 1,
            before_seq=int(cursor) if cursor else None,
        )
    seq = {r.id: r.seq for r in rows}
    return WebhookDeliveryList.of(
        rows,
        limit,
        item=lambda r: WebhookDeliveryResponse.model_validate(delivery_view(r)),
        cursor_of=lambda d: str(seq[d.id]),
    )
