"""POST /v1/route: the ordered candidate routes for one payment attempt; /methods: the same for several methods
on one snapshot; /simulate: the same, dry."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from libs.common.errors import Problem
from libs.common.web import JsonFastRoute, Runtime
from services.routing.api.deps import SnapshotSourceDep
from services.routing.api.schemas import (
    RouteDecideMethodsRequest,
    RouteDecideRequest,
    RouteDecisionResponse,
    RouteMethodsDecisionResponse,
    RouteSimulateRequest,
    decision_fields,
)
from services.routing.context import routing_context
from services.routing.domain.decide import decide
from services.routing.store.snapshot import SnapshotSource

router = APIRouter(prefix="/v1/route", tags=["decide"])


@router.post("", response_model_exclude_none=False)
async def decide_route(body: RouteDecideRequest, source: SnapshotSourceDep) -> RouteDecisionResponse:
    """Candidates in the order to try them. No candidate: 422 no_route_available or 503 channel_unavailable."""
    now = datetime.now(UTC)
    decision = decide(body.to_context(), await source.snapshot(body.merchant_id, now), now)
    decision.require_candidates()
    return RouteDecisionResponse.of(decision, body.currency)


@router.post("/methods", response_model_exclude_none=False)
async def decide_methods(body: RouteDecideMethodsRequest, source: SnapshotSourceDep) -> RouteMethodsDecisionResponse:
    """`POST /v1/route` for each method asked, on one snapshot: 200 with every method's candidates and `outcome`
    (routed | no_route_available | channel_unavailable: the code `/v1/route` would answer for that method)."""
    return await methods_decision(body, source)


async def methods_decision(body: RouteDecideMethodsRequest, source: SnapshotSource) -> RouteMethodsDecisionResponse:
    now = datetime.now(UTC)
    snapshot = await source.snapshot(body.merchant_id, now)
    decisions = []
    for method, context in zip(body.methods, body.contexts(), strict=True):
        decision = decide(context, snapshot, now)
        outcome = "routed"
        try:
            decision.require_candidates()
        except Problem as problem:
            outcome = problem.spec.code
        decisions.append(decision_fields(decision, body.currency, outcome, method=method))
    # One validation of the whole answer (schemas.decision_fields says why).
    return RouteMethodsDecisionResponse.model_validate({"decisions": decisions})


async def _fast_methods_decision(runtime: Runtime, body: RouteDecideMethodsRequest) -> RouteMethodsDecisionResponse:
    return await methods_decision(body, routing_context(runtime).snapshots)


def fast_methods_route() -> JsonFastRoute[RouteDecideMethodsRequest]:
    """`POST /v1/route/methods`, the cashier's call on every create, without FastAPI's per-request machinery for a
    valid body (`libs.common.web.JsonFastRoute`); anything else is served by `decide_methods` above, as before."""
    return JsonFastRoute(f"{router.prefix}/methods", RouteDecideMethodsRequest, _fast_methods_decision)


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
