"""Dependencies shared by the routing API's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from libs.common.errors import UNAUTHORIZED, Problem
from libs.common.web import get_runtime
from services.routing.store.snapshot import SnapshotSource

ACTOR_HEADER = "X-Juhe-Actor"
SNAPSHOT_SOURCE_KEY = "routing_snapshot_source"


def get_snapshot_source(request: Request) -> SnapshotSource:
    source: SnapshotSource = get_runtime(request).extras[SNAPSHOT_SOURCE_KEY]
    return source


def get_actor(x_juhe_actor: Annotated[str | None, Header(max_length=128)] = None) -> str:
    """Who makes a configuration change: set by the gateway / console after authenticating the operator."""
    if not x_juhe_actor or not x_juhe_actor.strip():
        raise Problem(UNAUTHORIZED, f"configuration changes need the {ACTOR_HEADER} header (who is changing it)")
    return x_juhe_actor.strip()


SnapshotSourceDep = Annotated[SnapshotSource, Depends(get_snapshot_source)]
ActorDep = Annotated[str, Depends(get_actor)]
