"""Channel notifications: the notify_url every attempt gives its channel."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from services.cashier.api.deps import CashierDep
from services.cashier.flows.notifications import handle_notification
from services.cashier.flows.transfers import handle_transfer_notification

router = APIRouter(tags=["channel notifications"])

NOTIFICATION_BODY_MAX_BYTES = 256 * 1024


@router.post("/v1/notify/wechatpay-transfers/{merchant_id}", include_in_schema=False)
async def notify_transfer(merchant_id: str, request: Request, cashier: CashierDep) -> Response:
    """WeChat 商家转账 callbacks (MCHTRANSFER.BILL.FINISHED) for the transfers settlement asked for."""
    body = await request.body()
    reply = await handle_transfer_notification(
        cashier, merchant_id=merchant_id, headers=dict(request.headers), body=body[: NOTIFICATION_BODY_MAX_BYTES + 1]
    )
    return Response(content=reply.body, status_code=reply.status_code, media_type=reply.content_type)


@router.post("/v1/notify/{channel}/{merchant_id}", include_in_schema=False)
async def notify(channel: str, merchant_id: str, request: Request, cashier: CashierDep) -> Response:
    body = await request.body()
    reply = await handle_notification(
        cashier,
        channel=channel,
        merchant_id=merchant_id,
        headers=dict(request.headers),
        body=body[: NOTIFICATION_BODY_MAX_BYTES + 1],
    )
    return Response(content=reply.body, status_code=reply.status_code, media_type=reply.content_type)
