"""FastAPI dependencies of the gateway's own routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.api.gatekeeper import Gatekeeper
from gateway.context import GatewayContext, gateway_context
from gateway.domain.access import Principal
from gateway.domain.errors import ROUTE_FORBIDDEN
from gateway.flows.identities import Identities
from libs.common.errors import Problem
from libs.common.internal_auth import InternalIdentity


async def get_context(request: Request) -> GatewayContext:
    """Async on purpose: FastAPI runs sync dependencies in a thread pool, a hop per request."""
    return gateway_context(request.app.state.runtime)


async def get_gatekeeper(request: Request) -> Gatekeeper:
    return gateway_context(request.app.state.runtime).gatekeeper


async def get_identities(request: Request) -> Identities:
    return gateway_context(request.app.state.runtime).identities


async def platform_principal(request: Request) -> Principal:
    """A platform operator, authenticated, nonce-checked and rate-limited as an admin call."""
    gatekeeper = await get_gatekeeper(request)
    body = await gatekeeper.read_body(request)
    principal = await gatekeeper.admit(request, body, "admin")
    if principal.kind != "platform" or principal.staff_id is not None:
        raise Problem(ROUTE_FORBIDDEN, "only platform operators' admin keys may call this endpoint")
    return principal


def internal_service(identity: InternalIdentity) -> str:
    """A Juhe service calling with an internal token that names it (never a merchant or user)."""
    if identity.kind != "service" or identity.service is None:
        raise Problem(ROUTE_FORBIDDEN, "internal endpoint: services only")
    return identity.service


ContextDep = Annotated[GatewayContext, Depends(get_context)]
PlatformDep = Annotated[Principal, Depends(platform_principal)]
IdentitiesDep = Annotated[Identities, Depends(get_identities)]
GatekeeperDep = Annotated[Gatekeeper, Depends(get_gatekeeper)]
InternalServiceDep = Annotated[str, Depends(internal_service)]
