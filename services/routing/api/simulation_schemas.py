"""Shapes of the routing simulator (`GET /v1/routing-simulations`): the question in the query, the answer."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from libs.common.money import MAX_AMOUNT_MINOR, Currency
from services.routing.api.schemas import CandidateResponse, Id, IndustryCode, SkippedResponse
from services.routing.domain.model import Method, PayerClient, Scene
from services.routing.flows.simulate import MethodSimulation, Simulation, SpecialRate

METHODS_MAX = len(Method)


class RoutingSimulationQuery(BaseModel):
    """The payment to imagine. `methods` in the order the payer would choose them (repeat the parameter)."""

    model_config = ConfigDict(extra="forbid")

    merchant_id: Id
    # A query string is text: digits only (no "1.5", no "1e3"), then the API's amount bounds.
    amount_minor: int = Field(gt=0, le=MAX_AMOUNT_MINOR, description="Amount in minor units (fen)")
    currency: Currency = "CNY"
    scene: Scene
    methods: list[Method] = Field(min_length=1, max_length=METHODS_MAX)
    payer_client: PayerClient = PayerClient.OTHER
    industry: IndustryCode | None = None
    payment_id: Id = Field(default="sim_payment", description="the payment id a traffic split hashes")
    at: AwareDatetime | None = Field(default=None, description="decide as of this time (default now)")


class SpecialRateResponse(BaseModel):
    application_id: str
    programme_id: str


class KeptRouteResponse(CandidateResponse):
    special_rate: SpecialRateResponse | None = Field(description="the approved special-rate application quoting it")


class MethodSimulationResponse(BaseModel):
    method: Method
    outcome: str = Field(description="routed | no_route_available | channel_unavailable")
    kept: list[KeptRouteResponse] = Field(description="candidates in the order they would be tried, and why")
    dropped: list[SkippedResponse] = Field(description="routes of this method left out, with the reason code")

    @classmethod
    def of(cls, m: MethodSimulation, currency: str, special: dict[str, SpecialRate]) -> MethodSimulationResponse:
        kept = []
        for c in m.decision.candidates:
            rate = special.get(c.fee.rate_id)
            label = (
                None
                if rate is None
                else SpecialRateResponse(application_id=rate.application_id, programme_id=rate.programme_id)
            )
            base = CandidateResponse.of(c, currency).model_dump()
            kept.append(KeptRouteResponse(**base, special_rate=label))
        return cls(method=m.method, outcome=m.outcome, kept=kept, dropped=[SkippedResponse.of(s) for s in m.dropped])


class ChosenRouteResponse(BaseModel):
    method: Method
    route_id: str
    fee_minor: int
    rate_bps: int
    explanation: str


class RoutingSimulationResponse(BaseModel):
    merchant_id: str
    amount_minor: int
    currency: str
    scene: Scene
    simulated_at: datetime
    at: datetime
    config_version: int
    outcome: str = Field(description="routed if any preferred method routes, else why not")
    chosen: ChosenRouteResponse | None
    methods: list[MethodSimulationResponse]
    side_effects: bool = Field(default=False, description="always false: a simulation writes nothing")

    @classmethod
    def of(cls, q: RoutingSimulationQuery, s: Simulation) -> RoutingSimulationResponse:
        chosen = None
        if s.chosen is not None:
            method, c = s.chosen
            chosen = ChosenRouteResponse(
                method=method,
                route_id=c.route_id,
                fee_minor=c.fee.fee_minor,
                rate_bps=c.fee.rate_bps,
                explanation=c.explanation,
            )
        return cls(
            merchant_id=q.merchant_id,
            amount_minor=q.amount_minor,
            currency=q.currency,
            scene=q.scene,
            simulated_at=s.simulated_at,
            at=s.at,
            config_version=s.methods[0].decision.config_version,
            outcome=s.outcome,
            chosen=chosen,
            methods=[MethodSimulationResponse.of(m, q.currency, s.special_rates) for m in s.methods],
        )
