"""Channel notifications: the notify_url every attempt gives its channel."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from services.cashier.api.deps import CashierDep
from services.cashier.flows.notifications import handle_notification

router = APIRouter(tags=["channel notifications"])

NOTIFICATION_BODY_MAX_BYTES = 256 * 1024


@router.post("/v1/notify/{channel}/{merchant_id}", include_in_schema=False)
async def notify(channel: str, merchant_id: str, request: Request, cashier: CashierDep) -> Response:
    body = await request.body()
    reply = await handle_notification(
        cashier, channel=channel, merchant_id=merchant_id, headers=dict(request.headers),
        body=body[: NOTIFICATION_BODY_MAX_BYTES + 1],
    )
    return Response(content=reply.body, status_code=reply.status_code, media_type=reply.content_type)
