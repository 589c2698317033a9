"""The public API of the services behind the gateway: one catch-all route into the gatekeeper.

A plain Starlette route, not a FastAPI one: the handler takes the raw request and needs none of
FastAPI's dependency solving or validation, which would run on every proxied call for nothing.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gateway.gatekeeper import Gatekeeper

router = APIRouter()
PROXIED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


async def proxy(request: Request) -> Response:
    gatekeeper: Gatekeeper = request.app.state.runtime.extras["gatekeeper"]
    return await gatekeeper.handle(request)


router.add_route("/v1/{path:path}", proxy, methods=PROXIED_METHODS, include_in_schema=False)
