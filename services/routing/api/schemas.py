"""Request and response schemas of the routing API (pydantic), and their mapping to the domain.

Requests forbid unknown fields (a typo in a rule must not silently widen it). Shape errors are
`validation_failed`; semantic errors (unknown route in a rule, min above max, overlapping rates) come
from the domain with their own codes (`rule_invalid`, `fee_rate_invalid`, `fee_rate_overlap`, …).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from libs.common.money import AmountMinor, Currency
from libs.common.paging import ListPage
from services.routing.domain.decide import Candidate, Decision, RoutingSettings, Skipped
from services.routing.domain.fees import FeeRate
from services.routing.domain.health import Breaker, HealthPolicy, OutcomeCounts
from services.routing.domain.model import (
    Contract,
    Method,
    PayerClient,
    PaymentContext,
    Route,
    RouteKind,
    Scene,
    TimeWindow,
    parse_hhmm,
)
from services.routing.domain.rules import Action, ActionKind, Conditions, Rule, RuleDraft, RuleScope
from services.routing.domain.scoring import ScoringWeights

Id = Annotated[str, Field(min_length=1, max_length=64)]
IndustryCode = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]{0,31}$")]
NonNegativeMinor = Annotated[StrictInt, Field(ge=0, le=10**12)]
LIST_MAX = 100
_DEFAULT_WEIGHTS = ScoringWeights()
_DEFAULT_HEALTH = HealthPolicy()


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- shared pieces --------------------------------------------------------------------------------


class TimeWindowModel(_Request):
    start: str = Field(examples=["08:00"])
    end: str = Field(examples=["22:00"], description="exclusive; earlier than start wraps past midnight")
    weekdays: list[Annotated[int, Field(ge=1, le=7)]] | None = Field(default=None, description="ISO: 1=Mon … 7=Sun")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        parse_hhmm(value)
        return value

    def to_domain(self) -> TimeWindow:
        return TimeWindow(
            parse_hhmm(self.start),
            parse_hhmm(self.end),
            None if self.weekdays is None else frozenset(self.weekdays),
        )

    @classmethod
    def of(cls, window: TimeWindow) -> TimeWindowModel:
        return cls.model_validate(window.as_dict())


# --- channel routes -------------------------------------------------------------------------------


class ChannelRouteFields(_Request):
    method: Method
    scenes: list[Scene] = Field(min_length=1, max_length=len(Scene))
    kind: RouteKind
    provider: Id
    connector: Id
    config_ref: Annotated[str, Field(min_length=1, max_length=128)]
    currency: Currency = "CNY"
    enabled: StrictBool = True
    amount_min_minor: AmountMinor = 1
    amount_max_minor: AmountMinor | None = None
    daily_volume_cap_minor: AmountMinor | None = None
    opening_hours: list[TimeWindowModel] = Field(default_factory=list, max_length=14)
    payer_clients: list[PayerClient] | None = None
    expected_success_rate: float = Field(default=0.95, gt=0, le=1)
    priority: int = Field(default=100, ge=0, le=1_000_000)
    description: str = Field(default="", max_length=500)

    def to_domain(self, route_id: str) -> Route:
        return Route(
            route_id=route_id,
            method=self.method,
            scenes=frozenset(self.scenes),
            kind=self.kind,
            provider=self.provider,
            connector=self.connector,
            config_ref=self.config_ref,
            currency=self.currency,
            enabled=self.enabled,
            amount_min_minor=self.amount_min_minor,
            amount_max_minor=self.amount_max_minor,
            daily_volume_cap_minor=self.daily_volume_cap_minor,
            opening_hours=tuple(w.to_domain() for w in self.opening_hours),
            payer_clients=None if self.payer_clients is None else frozenset(self.payer_clients),
            expected_success_rate=self.expected_success_rate,
            priority=self.priority,
            description=self.description,
        )


class ChannelRouteCreateRequest(ChannelRouteFields):
    route_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$", examples=["wechat_jsapi_allinpay"])


class ChannelRouteReplaceRequest(ChannelRouteFields):
    expected_version: int | None = Field(default=None, description="the version you edited; 409 if it moved")


class ChannelRouteResponse(BaseModel):
    route_id: str
    method: Method
    scenes: list[Scene]
    kind: RouteKind
    provider: str
    connector: str
    config_ref: str
    currency: str
    enabled: bool
    amount_min_minor: int
    amount_max_minor: int | None
    daily_volume_cap_minor: int | None
    opening_hours: list[TimeWindowModel]
    payer_clients: list[PayerClient] | None
    expected_success_rate: float
    priority: int
    description: str
    version: int

    @classmethod
    def of(cls, route: Route) -> ChannelRouteResponse:
        return cls(
            route_id=route.route_id,
            method=route.method,
            scenes=sorted(route.scenes),
            kind=route.kind,
            provider=route.provider,
            connector=route.connector,
            config_ref=route.config_ref,
            currency=route.currency,
            enabled=route.enabled,
            amount_min_minor=route.amount_min_minor,
            amount_max_minor=route.amount_max_minor,
            daily_volume_cap_minor=route.daily_volume_cap_minor,
            opening_hours=[TimeWindowModel.of(w) for w in route.opening_hours],
            payer_clients=None if route.payer_clients is None else sorted(route.payer_clients),
            expected_success_rate=route.expected_success_rate,
            priority=route.priority,
            description=route.description,
            version=route.version,
        )


class ChannelRouteListResponse(ListPage[ChannelRouteResponse]):
    pass


class BreakerResponse(BaseModel):
    state: str
    effective_state: str
    changed_at: datetime | None
    consecutive_failures: int
    half_open_successes: int


class RouteHealthResponse(BaseModel):
    route_id: str
    circuit: BreakerResponse
    window_seconds: int
    attempts: int
    succeeded: int
    declined: int
    errors: int
    timeouts: int
    success_rate_estimate: float
    mean_latency_ms: float | None
    volume_today_minor: int

    @classmethod
    def of(
        cls,
        route: Route,
        breaker: Breaker,
        effective: str,
        counts: OutcomeCounts,
        window_seconds: int,
        success_rate: float,
        volume_today_minor: int,
    ) -> RouteHealthResponse:
        return cls(
            route_id=route.route_id,
            circuit=BreakerResponse(
                state=breaker.state.value,
                effective_state=effective,
                changed_at=breaker.changed_at,
                consecutive_failures=breaker.consecutive_failures,
                half_open_successes=breaker.half_open_successes,
            ),
            window_seconds=window_seconds,
            attempts=counts.attempts,
            succeeded=counts.succeeded,
            declined=counts.declined,
            errors=counts.errors,
            timeouts=counts.timeouts,
            success_rate_estimate=success_rate,
            mean_latency_ms=counts.mean_latency_ms,
            volume_today_minor=volume_today_minor,
        )


# --- fee rates ------------------------------------------------------------------------------------


class FeeRateCreateRequest(_Request):
    route_id: Id
    rate_bps: StrictInt = Field(ge=0, le=10_000, description="basis points: 38 = 0.38 %")
    min_fee_minor: NonNegativeMinor = 0
    max_fee_minor: NonNegativeMinor | None = None
    fixed_fee_minor: NonNegativeMinor = 0
    industry: IndustryCode | None = None
    merchant_id: Id | None = None
    valid_from: AwareDatetime
    valid_until: AwareDatetime | None = None

    def to_domain(self, rate_id: str) -> FeeRate:
        return FeeRate(
            rate_id=rate_id,
            route_id=self.route_id,
            rate_bps=self.rate_bps,
            valid_from=self.valid_from,
            valid_until=self.valid_until,
            min_fee_minor=self.min_fee_minor,
            max_fee_minor=self.max_fee_minor,
            fixed_fee_minor=self.fixed_fee_minor,
            industry=self.industry,
            merchant_id=self.merchant_id,
        )


class FeeRateExpireRequest(_Request):
    valid_until: AwareDatetime
    expected_version: int | None = None


class FeeRateResponse(BaseModel):
    rate_id: str
    route_id: str
    rate_bps: int
    min_fee_minor: int
    max_fee_minor: int | None
    fixed_fee_minor: int
    industry: str | None
    merchant_id: str | None
    valid_from: datetime
    valid_until: datetime | None
    version: int

    @classmethod
    def of(cls, rate: FeeRate, version: int) -> FeeRateResponse:
        return cls(
            rate_id=rate.rate_id,
            route_id=rate.route_id,
            rate_bps=rate.rate_bps,
            min_fee_minor=rate.min_fee_minor,
            max_fee_minor=rate.max_fee_minor,
            fixed_fee_minor=rate.fixed_fee_minor,
            industry=rate.industry,
            merchant_id=rate.merchant_id,
            valid_from=rate.valid_from,
            valid_until=rate.valid_until,
            version=version,
        )


class FeeRateListResponse(ListPage[FeeRateResponse]):
    pass


# --- contracts ------------------------------------------------------------------------------------


class ContractPutRequest(_Request):
    sub_merchant_id: Id
    enabled: StrictBool = True
    industry: IndustryCode | None = None
    expected_version: int | None = Field(default=None, description="0 or absent to create; the version to update")

    def to_domain(self, merchant_id: str, route_id: str) -> Contract:
        return Contract(merchant_id, route_id, self.sub_merchant_id, self.enabled, self.industry)


class ContractResponse(BaseModel):
    merchant_id: str
    route_id: str
    sub_merchant_id: str
    enabled: bool
    industry: str | None
    version: int

    @classmethod
    def of(cls, c: Contract) -> ContractResponse:
        return cls(
            merchant_id=c.merchant_id,
            route_id=c.route_id,
            sub_merchant_id=c.sub_merchant_id,
            enabled=c.enabled,
            industry=c.industry,
            version=c.version,
        )


class ContractListResponse(ListPage[ContractResponse]):
    pass


# --- rules ----------------------------------------------------------------------------------------


class ConditionsModel(_Request):
    amount_min_minor: AmountMinor | None = None
    amount_max_minor: AmountMinor | None = None
    currencies: list[Currency] | None = Field(default=None, max_length=LIST_MAX)
    methods: list[Method] | None = Field(default=None, max_length=LIST_MAX)
    scenes: list[Scene] | None = Field(default=None, max_length=LIST_MAX)
    payer_clients: list[PayerClient] | None = Field(default=None, max_length=LIST_MAX)
    merchant_ids: list[Id] | None = Field(default=None, max_length=LIST_MAX)
    industries: list[IndustryCode] | None = Field(default=None, max_length=LIST_MAX)
    time_of_day: TimeWindowModel | None = None

    def to_domain(self) -> Conditions:
        def many(values: list[Any] | None) -> frozenset[Any] | None:
            return None if values is None else frozenset(values)

        return Conditions(
            amount_min_minor=self.amount_min_minor,
            amount_max_minor=self.amount_max_minor,
            currencies=many(self.currencies),
            methods=many(self.methods),
            scenes=many(self.scenes),
            payer_clients=many(self.payer_clients),
            merchant_ids=many(self.merchant_ids),
            industries=many(self.industries),
            time_of_day=None if self.time_of_day is None else self.time_of_day.to_domain(),
        )


class ActionModel(_Request):
    kind: ActionKind
    route_ids: list[Id] = Field(default_factory=list, max_length=64)
    weights: dict[str, StrictInt] = Field(default_factory=dict, description="split only: route_id → weight")
    exclusive: StrictBool = False

    def to_domain(self) -> Action:
        return Action(self.kind, tuple(self.route_ids), tuple(self.weights.items()), self.exclusive)


class RuleWriteRequest(_Request):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    scope: RuleScope
    merchant_id: Id | None = None
    priority: int = Field(ge=0, le=1_000_000, description="lower is evaluated first")
    enabled: StrictBool = True
    conditions: ConditionsModel = Field(default_factory=ConditionsModel)
    action: ActionModel
    expected_version: int | None = Field(default=None, description="on update: the version you edited")

    def to_draft(self) -> RuleDraft:
        return RuleDraft(
            name=self.name,
            scope=self.scope,
            priority=self.priority,
            conditions=self.conditions.to_domain(),
            action=self.action.to_domain(),
            merchant_id=self.merchant_id,
            enabled=self.enabled,
        )


class RuleResponse(BaseModel):
    rule_id: str
    name: str
    scope: RuleScope
    merchant_id: str | None
    priority: int
    enabled: bool
    conditions: dict[str, Any]
    action: dict[str, Any]
    version: int

    @classmethod
    def of(cls, rule: Rule) -> RuleResponse:
        from services.routing.domain.rules import rule_to_dict

        return cls.model_validate(rule_to_dict(rule))


class RuleListResponse(ListPage[RuleResponse]):
    pass


class AuditEntryResponse(BaseModel):
    audit_id: str
    resource_type: str
    resource_id: str
    action: str
    actor: str
    at: datetime
    version: int
    config_version: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditListResponse(ListPage[AuditEntryResponse]):
    pass


# --- settings -------------------------------------------------------------------------------------


class ScoringWeightsModel(_Request):
    fee_weight: float = Field(default=_DEFAULT_WEIGHTS.fee_weight, ge=0)
    failure_penalty_bps: float = Field(default=_DEFAULT_WEIGHTS.failure_penalty_bps, ge=0)
    latency_penalty_bps_per_second: float = Field(default=_DEFAULT_WEIGHTS.latency_penalty_bps_per_second, ge=0)
    half_open_penalty_bps: float = Field(default=_DEFAULT_WEIGHTS.half_open_penalty_bps, ge=0)


class HealthPolicyModel(_Request):
    bucket_seconds: int = Field(default=_DEFAULT_HEALTH.bucket_seconds, ge=1, le=3600)  # 0 divided by zero
    success_window_seconds: int = _DEFAULT_HEALTH.success_window_seconds
    success_prior_weight: float = _DEFAULT_HEALTH.success_prior_weight
    breaker_window_seconds: int = _DEFAULT_HEALTH.breaker_window_seconds
    min_attempts: int = _DEFAULT_HEALTH.min_attempts
    failure_ratio_to_open: float = _DEFAULT_HEALTH.failure_ratio_to_open
    consecutive_failures_to_open: int = _DEFAULT_HEALTH.consecutive_failures_to_open
    open_seconds: int = _DEFAULT_HEALTH.open_seconds
    half_open_probe_ratio: float = _DEFAULT_HEALTH.half_open_probe_ratio
    half_open_successes_to_close: int = _DEFAULT_HEALTH.half_open_successes_to_close


class RoutingSettingsRequest(_Request):
    weights: ScoringWeightsModel = Field(default_factory=ScoringWeightsModel)
    health: HealthPolicyModel = Field(default_factory=HealthPolicyModel)
    utc_offset_minutes: int = 480
    candidates_max: int = 10
    expected_version: int | None = None

    def to_domain(self) -> RoutingSettings:
        return RoutingSettings(
            weights=ScoringWeights(**self.weights.model_dump()),
            health=HealthPolicy(**self.health.model_dump()),
            utc_offset_minutes=self.utc_offset_minutes,
            candidates_max=self.candidates_max,
        )


class RoutingSettingsResponse(BaseModel):
    weights: dict[str, float]
    health: dict[str, float | int]
    utc_offset_minutes: int
    candidates_max: int
    version: int
    config_version: int


# --- decide ---------------------------------------------------------------------------------------


class _PaymentFacts(_Request):
    """What routing is told about a payment, whatever the method(s) asked about."""

    payment_id: Id
    merchant_id: Id
    amount_minor: AmountMinor
    currency: Currency
    scene: Scene
    payer_client: PayerClient = PayerClient.OTHER
    industry: IndustryCode | None = None
    exclude_route_ids: list[Id] = Field(default_factory=list, max_length=50, description="routes already tried")

    def context_for(self, method: Method) -> PaymentContext:
        return PaymentContext(
            payment_id=self.payment_id,
            merchant_id=self.merchant_id,
            amount_minor=self.amount_minor,
            currency=self.currency,
            method=method,
            scene=self.scene,
            payer_client=self.payer_client,
            industry=self.industry,
            exclude_route_ids=frozenset(self.exclude_route_ids),
        )


class RouteDecideRequest(_PaymentFacts):
    method: Method

    def to_context(self) -> PaymentContext:
        return self.context_for(self.method)


class RouteDecideMethodsRequest(_PaymentFacts):
    """`POST /v1/route/methods`: the decision of `POST /v1/route` for each of several methods, on one snapshot.

    The cashier asks for every method a payment could be paid with (the merchant's channels, in its order);
    one call reads the shared state once instead of once per method, and costs one request instead of one
    per method (docs/performance.md)."""

    methods: list[Method] = Field(min_length=1, max_length=len(Method))

    @field_validator("methods")
    @classmethod
    def _distinct(cls, methods: list[Method]) -> list[Method]:
        if len(set(methods)) != len(methods):
            raise ValueError("methods must be distinct")
        return methods

    def contexts(self) -> list[PaymentContext]:
        return [self.context_for(method) for method in self.methods]


class RouteSimulateRequest(RouteDecideRequest):
    payment_id: Id = "sim_payment"
    at: AwareDatetime | None = Field(default=None, description="decide as of this time (default now)")


class FeeQuoteResponse(BaseModel):
    fee_minor: int
    currency: str
    rate_id: str
    rate_bps: int
    basis: str
    min_fee_minor: int
    max_fee_minor: int | None
    fixed_fee_minor: int
    valid_from: datetime
    valid_until: datetime | None


class ScoreResponse(BaseModel):
    expected_cost_bps: float
    fee_bps: float
    failure_bps: float
    latency_bps: float
    health_bps: float


class CandidateResponse(BaseModel):
    rank: int
    route_id: str
    method: Method
    kind: RouteKind
    provider: str
    connector: str
    config_ref: str
    sub_merchant_id: str
    fee: FeeQuoteResponse
    success_rate: float
    attempts_in_window: int
    mean_latency_ms: float | None
    circuit_state: str
    score: ScoreResponse
    placement: str
    explanation: str

    @classmethod
    def of(cls, c: Candidate, currency: str) -> CandidateResponse:
        return cls.model_validate(candidate_fields(c, currency))


def candidate_fields(c: Candidate, currency: str) -> dict[str, Any]:
    """A `CandidateResponse`'s fields as plain data, for one validation of the whole answer (see `decision_fields`)."""
    f = c.fee
    score = c.score
    return {
        "rank": c.rank,
        "route_id": c.route_id,
        "method": c.method,
        "kind": c.kind,
        "provider": c.provider,
        "connector": c.connector,
        "config_ref": c.config_ref,
        "sub_merchant_id": c.sub_merchant_id,
        "fee": {
            "fee_minor": f.fee_minor,
            "currency": currency,
            "rate_id": f.rate_id,
            "rate_bps": f.rate_bps,
            "basis": f.basis,
            "min_fee_minor": f.min_fee_minor,
            "max_fee_minor": f.max_fee_minor,
            "fixed_fee_minor": f.fixed_fee_minor,
            "valid_from": f.valid_from,
            "valid_until": f.valid_until,
        },
        "success_rate": round(c.success_rate, 6),
        "attempts_in_window": c.attempts_in_window,
        "mean_latency_ms": None if c.mean_latency_ms is None else round(c.mean_latency_ms, 3),
        "circuit_state": c.circuit_state.value,
        "score": {
            "expected_cost_bps": round(score.total_bps, 6),
            "fee_bps": round(score.fee_bps, 6),
            "failure_bps": round(score.failure_bps, 6),
            "latency_bps": round(score.latency_bps, 6),
            "health_bps": round(score.health_bps, 6),
        },
        "placement": c.placement.value,
        "explanation": c.explanation,
    }


class SkippedResponse(BaseModel):
    route_id: str
    reason: str
    explanation: str

    @classmethod
    def of(cls, s: Skipped) -> SkippedResponse:
        return cls.model_validate(skipped_fields(s))


def skipped_fields(s: Skipped) -> dict[str, Any]:
    return {"route_id": s.route_id, "reason": s.reason.value, "explanation": s.explanation}


class RouteDecisionResponse(BaseModel):
    payment_id: str
    decided_at: datetime
    config_version: int
    matched_rule_ids: list[str]
    candidates: list[CandidateResponse]
    skipped: list[SkippedResponse]
    outcome: str = Field(description="routed | no_route_available | channel_unavailable")

    @classmethod
    def of(cls, d: Decision, currency: str, outcome: str = "routed", **extra: Any) -> Self:
        return cls.model_validate(decision_fields(d, currency, outcome, **extra))


def decision_fields(d: Decision, currency: str, outcome: str = "routed", **extra: Any) -> dict[str, Any]:
    """A `RouteDecisionResponse`'s fields as plain data. The answer is validated once, from the top (one call into
    pydantic's core for the whole tree), not model by model: building ~30 nested models one `__init__` at a time
    cost a quarter more CPU per `/v1/route/methods` (docs/performance.md, "Sixth pass: the edges"). The same
    validation runs on the same values, so the JSON is byte for byte what it was."""
    return {
        **extra,
        "payment_id": d.payment_id,
        "decided_at": d.decided_at,
        "config_version": d.config_version,
        "matched_rule_ids": list(d.matched_rule_ids),
        "candidates": [candidate_fields(c, currency) for c in d.candidates],
        "skipped": [skipped_fields(s) for s in d.skipped],
        "outcome": outcome,
    }


class MethodDecisionResponse(RouteDecisionResponse):
    method: Method


class RouteMethodsDecisionResponse(BaseModel):
    """One decision per method asked, in the order asked; each `outcome` as `/v1/route/simulate` gives it."""

    decisions: list[MethodDecisionResponse]
