"""Admin API for channel routes (/v1/channel-routes) and their live health."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter

from libs.common.paging import KnownQueryOnly, PageLimit, cursor_query
from libs.common.web import UowDep
from services.routing.api.deps import ActorDep, SnapshotSourceDep
from services.routing.api.schemas import (
    ChannelRouteCreateRequest,
    ChannelRouteListResponse,
    ChannelRouteReplaceRequest,
    ChannelRouteResponse,
    RouteHealthResponse,
)
from services.routing.domain.decide import RouteHealth
from services.routing.domain.health import effective_state, estimate_success_rate
from services.routing.store import channel_routes as store

router = APIRouter(prefix="/v1/channel-routes", tags=["channel routes"])


@router.post("", status_code=201)
async def create_channel_route(body: ChannelRouteCreateRequest, uow: UowDep, actor: ActorDep) -> ChannelRouteResponse:
    async with uow.begin() as tx:
        route = await store.create_route(tx, body.to_domain(body.route_id), actor=actor)
    return ChannelRouteResponse.of(route)


ROUTE_CURSOR = r"^[a-z0-9][a-z0-9_\-]{0,63}$"


@router.get("", dependencies=[KnownQueryOnly])
async def list_channel_routes(
    uow: UowDep, limit: PageLimit, cursor: Annotated[str | None, cursor_query(ROUTE_CURSOR)] = None
) -> ChannelRouteListResponse:
    """Every channel route, by route id."""
    async with uow.read() as conn:
        routes = await store.list_routes(conn, after=cursor, limit=limit + 1)
    return ChannelRouteListResponse.of(routes, limit, item=ChannelRouteResponse.of, cursor_of=lambda r: r.route_id)


@router.get("/{route_id}")
async def get_channel_route(route_id: str, uow: UowDep) -> ChannelRouteResponse:
    async with uow.read() as conn:
        return ChannelRouteResponse.of(await store.get_route(conn, route_id))


@router.put("/{route_id}")
async def replace_channel_route(
    route_id: str, body: ChannelRouteReplaceRequest, uow: UowDep, actor: ActorDep
) -> ChannelRouteResponse:
    async with uow.begin() as tx:
        route = await store.replace_route(
            tx, body.to_domain(route_id), expected_version=body.expected_version, actor=actor
        )
    return ChannelRouteResponse.of(route)


@router.get("/{route_id}/health")
async def get_channel_route_health(route_id: str, source: SnapshotSourceDep) -> RouteHealthResponse:
    """Circuit state, success-rate window and today's volume, as every replica sees them."""
    now = datetime.now(UTC)
    snapshot = await source.snapshot("", now)
    route = snapshot.routes.get(route_id)
    if route is None:  # maybe created a moment ago on another replica: ask the database
        async with source.engine.connect() as conn:
            route = await store.get_route(conn, route_id)
    health = snapshot.health.get(route_id) or RouteHealth()
    policy = snapshot.settings.health
    return RouteHealthResponse.of(
        route,
        health.breaker,
        effective_state(health.breaker, now, policy).value,
        health.recent,
        policy.success_window_seconds,
        estimate_success_rate(health.recent, route.expected_success_rate, policy.success_prior_weight),
        snapshot.volume_today_minor.get(route_id, 0),
    )
