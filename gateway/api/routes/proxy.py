"""The public API of the services behind the gateway: one catch-all route into the gatekeeper."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gateway.api.deps import GatekeeperDep

router = APIRouter()


@router.api_route("/v1/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def proxy(path: str, request: Request, gatekeeper: GatekeeperDep) -> Response:
    return await gatekeeper.handle(request)
