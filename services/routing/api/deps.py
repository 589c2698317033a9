"""Dependencies shared by the routing API's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from libs.common.errors import FORBIDDEN, UNAUTHORIZED, Problem
from libs.common.internal_auth import IDENTITY_HEADER, internal_identity
from libs.common.web import get_runtime
from services.routing.context import RoutingContext, routing_context
from services.routing.store.snapshot import SnapshotSource

ACTOR_HEADER = "X-Juhe-Actor"


async def get_context(request: Request) -> RoutingContext:
    """Async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a hop per decision."""
    return routing_context(get_runtime(request))


RoutingContextDep = Annotated[RoutingContext, Depends(get_context)]


async def get_snapshot_source(request: Request) -> SnapshotSource:
    """From the request at once, not through `get_context`: one dependency fewer to solve on every decision."""
    return routing_context(get_runtime(request)).snapshots


def get_actor(request: Request, x_juhe_actor: Annotated[str | None, Header(max_length=128)] = None) -> str:
    """Who makes a configuration change, for the audit trail.

    Through the gateway: the signed identity (`X-Juhe-Identity`) of a platform operator or a service;
    merchants may not change routing configuration. `X-Juhe-Actor` may add the operator's name. In
    dev/test only, `X-Juhe-Actor` alone is accepted (tests and local tools without a gateway).
    """
    name = (x_juhe_actor or "").strip()
    if request.headers.get(IDENTITY_HEADER):
        identity = internal_identity(request)
        if identity.kind == "merchant":
            raise Problem(FORBIDDEN, "merchants cannot change routing configuration")
        principal = identity.user or identity.platform or identity.service
        return f"{identity.kind}:{principal}" + (f" ({name})" if name else "")
    if name and get_runtime(request).settings.env in ("dev", "test"):
        return name
    raise Problem(UNAUTHORIZED, f"configuration changes need {IDENTITY_HEADER} (or {ACTOR_HEADER} in dev/test)")


SnapshotSourceDep = Annotated[SnapshotSource, Depends(get_snapshot_source)]
ActorDep = Annotated[str, Depends(get_actor)]
