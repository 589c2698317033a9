"""Channel notifications: the notify_url every attempt gives its channel.

Plain Starlette routes, put first in the application's routes (app.py): a notification's body is the channel's own
format (a form, a signed JSON of its own), nothing FastAPI parses or validates, so its dependency solving and
request handling around the endpoint were pure cost on the second request of every payment (docs/performance.md,
"Seventh pass: the cashier"). Not in the OpenAPI document, as before; errors reach the application's handlers as from
any route, and the metric series keep their route label (the path template)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.cashier.context import cashier_context
from services.cashier.flows.notifications import handle_notification
from services.cashier.flows.transfers import handle_transfer_notification

NOTIFICATION_BODY_MAX_BYTES = 256 * 1024


async def notify_transfer(request: Request) -> Response:
    """WeChat 商家转账 callbacks (MCHTRANSFER.BILL.FINISHED) for the transfers settlement asked for."""
    body = await request.body()
    reply = await handle_transfer_notification(
        cashier_context(request.app.state.runtime).cashier,
        merchant_id=request.path_params["merchant_id"],
        headers=dict(request.headers),
        body=body[: NOTIFICATION_BODY_MAX_BYTES + 1],
    )
    return Response(content=reply.body, status_code=reply.status_code, media_type=reply.content_type)


async def notify(request: Request) -> Response:
    body = await request.body()
    reply = await handle_notification(
        cashier_context(request.app.state.runtime).cashier,
        channel=request.path_params["channel"],
        merchant_id=request.path_params["merchant_id"],
        headers=dict(request.headers),
        body=body[: NOTIFICATION_BODY_MAX_BYTES + 1],
    )
    return Response(content=reply.body, status_code=reply.status_code, media_type=reply.content_type)


def routes() -> list[Route]:
    """The notification routes, in matching order: the transfers' path before the channels' (it would match both)."""
    return [
        Route(
            "/v1/notify/wechatpay-transfers/{merchant_id}", notify_transfer, methods=["POST"], include_in_schema=False
        ),
        Route("/v1/notify/{channel}/{merchant_id}", notify, methods=["POST"], include_in_schema=False),
    ]
