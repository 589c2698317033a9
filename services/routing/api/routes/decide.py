"""POST /v1/route: the ordered candidate routes for one payment attempt; /simulate: the same, dry."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from libs.common.errors import Problem
from services.routing.api.deps import SnapshotSourceDep
from services.routing.api.schemas import RouteDecideRequest, RouteDecisionResponse, RouteSimulateRequest
from services.routing.domain.decide import decide

router = APIRouter(prefix="/v1/route", tags=["decide"])


@router.post("", response_model_exclude_none=False)
async def decide_route(body: RouteDecideRequest, source: SnapshotSourceDep) -> RouteDecisionResponse:
    """Candidates in the order to try them. No candidate: 422 no_route_available or 503 channel_unavailable."""
    now = datetime.now(UTC)
    decision = decide(body.to_context(), await source.snapshot(body.merchant_id, now), now)
    decision.require_candidates()
    return RouteDecisionResponse.of(decision, body.currency)


@router.post("/simulate")
async def simulate_route(body: RouteSimulateRequest, source: SnapshotSourceDep) -> RouteDecisionResponse:
    """How this payment would route (at `at`, with today's health), creating and changing nothing."""
    now = datetime.now(UTC)
    decision = decide(body.to_context(), await source.snapshot(body.merchant_id, now), body.at or now)
    try:
        decision.require_candidates()
    except Problem as problem:
        return RouteDecisionResponse.of(decision, body.currency, outcome=problem.spec.code)
    return RouteDecisionResponse.of(decision, body.currency)
