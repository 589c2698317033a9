"""GET /v1/routing-simulations: what would this payment do — the chosen route, every candidate with its fee
and why it was kept or dropped. Platform operators only (the gateway lists the prefix as platform-only);
a GET because it changes nothing (no Idempotency-Key needed, safe to repeat)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from libs.common.errors import FORBIDDEN, Problem
from libs.common.internal_auth import IDENTITY_HEADER, internal_identity
from libs.common.web import UowDep
from services.routing.api.deps import SnapshotSourceDep
from services.routing.api.simulation_schemas import RoutingSimulationQuery, RoutingSimulationResponse
from services.routing.flows.simulate import simulate

router = APIRouter(tags=["simulator"])


@router.get("/v1/routing-simulations")
async def simulate_routing(
    query: Annotated[RoutingSimulationQuery, Query()], uow: UowDep, source: SnapshotSourceDep, request: Request
) -> RoutingSimulationResponse:
    if request.headers.get(IDENTITY_HEADER) and internal_identity(request).kind in ("merchant", "user"):
        raise Problem(FORBIDDEN, "the routing simulator is the platform's")
    result = await simulate(
        uow,
        source,
        merchant_id=query.merchant_id,
        amount_minor=query.amount_minor,
        currency=query.currency,
        methods=list(dict.fromkeys(query.methods)),
        scene=query.scene,
        payer_client=query.payer_client,
        industry=query.industry,
        payment_id=query.payment_id,
        at=query.at,
    )
    return RoutingSimulationResponse.of(query, result)
