"""The routing service's typed context: its settings and the snapshot source, built once at start-up.

Routes reach it through `api/deps.py` (`RoutingContextDep`), the worker through `routing_context(runtime)`;
a field here replaces a string-keyed lookup, so a missing dependency fails type checking, not a request.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.common.web import Runtime, context_of
from services.routing.config import Settings
from services.routing.store.snapshot import SnapshotSource


@dataclass(frozen=True)
class RoutingContext:
    settings: Settings
    # The per-process cache of the static configuration every decision reads (store/snapshot.py).
    snapshots: SnapshotSource


def build_routing_context(settings: Settings, runtime: Runtime) -> RoutingContext:
    """What the start-up hook sets as `runtime.context`; nothing in it needs closing."""
    return RoutingContext(settings=settings, snapshots=SnapshotSource(runtime.engine))


def routing_context(runtime: Runtime) -> RoutingContext:
    return context_of(runtime, RoutingContext)
