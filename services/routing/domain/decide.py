"""decide(context, snapshot, now): the ordered list of routes to try for one payment attempt, explained.

Pure: everything it needs is in the snapshot (routes, fee rates, the merchant's contracts, rules,
health and today's volume, settings), so two replicas holding the same snapshot decide the same,
and the simulator calls exactly the same function without creating anything.

Steps, for each route in route_id order:
  1. eligibility, first failing check named: excluded by the caller, disabled, method, scene, payer
     client, currency, amount limits, merchant contract, rule allow/deny, opening hours, daily
     volume cap, a fee rate in force, circuit open;
  2. a fee quote (integer fen) from the rate in force, a smoothed success rate, mean latency, and an
     expected-cost score (see scoring.py).
Order of the candidates:
  forced route (force rule) → split choice (split rule, by payment-id hash) → half-open probes
  (their share of payments, by hash) → the rest by expected cost → half-open routes that are not
  probing for this payment, as a last resort.
Ties on expected cost break on the fee, then the route's priority, then the route id.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from libs.common.errors import Problem
from services.routing.domain.errors import CHANNEL_UNAVAILABLE, NO_ROUTE_AVAILABLE, FieldError
from services.routing.domain.fees import FeeQuote, FeeRate, quote, rate_in_force
from services.routing.domain.health import (
    Breaker,
    CircuitState,
    HealthPolicy,
    OutcomeCounts,
    effective_state,
    estimate_success_rate,
)
from services.routing.domain.model import (
    DEFAULT_UTC_OFFSET_MINUTES,
    Contract,
    LocalTime,
    Method,
    PaymentContext,
    Route,
    RouteKind,
)
from services.routing.domain.rules import ActionKind, Rule, RuleOutcome, evaluate_rules
from services.routing.domain.scoring import RouteScore, ScoringWeights, score_route
from services.routing.domain.split import below_ratio, pick_weighted, probe_key, split_key, unit_interval

CANDIDATES_MAX_LIMIT = 50


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    """Platform-tunable knobs, stored and versioned like the rest of the configuration."""

    weights: ScoringWeights = field(default_factory=ScoringWeights)
    health: HealthPolicy = field(default_factory=HealthPolicy)
    utc_offset_minutes: int = DEFAULT_UTC_OFFSET_MINUTES
    candidates_max: int = 10

    def validate(self) -> list[FieldError]:
        errors = self.weights.validate() + self.health.validate()
        if not -14 * 60 <= self.utc_offset_minutes <= 14 * 60:
            errors.append(FieldError("utc_offset_minutes", "must be between -840 and 840"))
        if not 1 <= self.candidates_max <= CANDIDATES_MAX_LIMIT:
            errors.append(FieldError("candidates_max", f"must be between 1 and {CANDIDATES_MAX_LIMIT}"))
        return errors


@dataclass(frozen=True, slots=True)
class RouteHealth:
    breaker: Breaker = field(default_factory=Breaker)
    recent: OutcomeCounts = field(default_factory=OutcomeCounts)  # over the success-rate window


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state one decision reads. The store builds it; tests and the benchmark build it by hand."""

    routes: Mapping[str, Route]
    rates: Mapping[str, tuple[FeeRate, ...]]  # by route_id
    contracts: Mapping[tuple[str, str], Contract]  # by (merchant_id, route_id)
    rules: tuple[Rule, ...] = ()
    health: Mapping[str, RouteHealth] = field(default_factory=dict)
    volume_today_minor: Mapping[str, int] = field(default_factory=dict)  # succeeded, local day of `now`
    settings: RoutingSettings = field(default_factory=RoutingSettings)
    config_version: int = 0


class SkipReason(enum.StrEnum):
    EXCLUDED_BY_REQUEST = "excluded_by_request"
    DISABLED = "disabled"
    METHOD_MISMATCH = "method_mismatch"
    SCENE_NOT_SUPPORTED = "scene_not_supported"
    PAYER_CLIENT_NOT_SUPPORTED = "payer_client_not_supported"
    CURRENCY_MISMATCH = "currency_mismatch"
    AMOUNT_BELOW_MIN = "amount_below_min"
    AMOUNT_ABOVE_MAX = "amount_above_max"
    NO_CONTRACT = "no_contract"
    CONTRACT_DISABLED = "contract_disabled"
    NOT_ALLOWED_BY_RULE = "not_allowed_by_rule"
    DENIED_BY_RULE = "denied_by_rule"
    OUTSIDE_OPENING_HOURS = "outside_opening_hours"
    DAILY_CAP_REACHED = "daily_cap_reached"
    NO_FEE_RATE = "no_fee_rate"
    CIRCUIT_OPEN = "circuit_open"
    FORCED_ELSEWHERE = "forced_elsewhere"
    BEYOND_CANDIDATES_MAX = "beyond_candidates_max"

    @property
    def is_transient(self) -> bool:
        """Could the same payment be routed here later without a configuration change?"""
        return self in _TRANSIENT


_TRANSIENT = frozenset(
    {
        SkipReason.EXCLUDED_BY_REQUEST,
        SkipReason.OUTSIDE_OPENING_HOURS,
        SkipReason.DAILY_CAP_REACHED,
        SkipReason.CIRCUIT_OPEN,
    }
)


class Placement(enum.StrEnum):
    FORCED = "forced"
    SPLIT = "split"
    PROBE = "probe"
    SCORE = "score"
    LAST_RESORT = "last_resort"


@dataclass(frozen=True, slots=True)
class Candidate:
    rank: int
    route_id: str
    method: Method
    kind: RouteKind
    provider: str
    connector: str
    config_ref: str
    sub_merchant_id: str
    fee: FeeQuote
    success_rate: float
    attempts_in_window: int
    mean_latency_ms: float | None
    circuit_state: CircuitState
    score: RouteScore
    placement: Placement
    explanation: str


@dataclass(frozen=True, slots=True)
class Skipped:
    route_id: str
    reason: SkipReason
    explanation: str


@dataclass(frozen=True, slots=True)
class Decision:
    payment_id: str
    decided_at: datetime
    candidates: tuple[Candidate, ...]
    skipped: tuple[Skipped, ...]
    matched_rule_ids: tuple[str, ...]
    config_version: int

    def require_candidates(self) -> None:
        """Raise the catalogue error that says why nothing can take this payment."""
        if self.candidates:
            return
        transient = [s for s in self.skipped if s.reason.is_transient]
        spec = CHANNEL_UNAVAILABLE if transient else NO_ROUTE_AVAILABLE
        raise Problem(
            spec,
            f"no route can take payment {self.payment_id}",
            skipped=[
                {"route_id": s.route_id, "reason": s.reason.value, "explanation": s.explanation} for s in self.skipped
            ],
        )


@dataclass(slots=True)
class _Eligible:
    route: Route
    contract: Contract
    fee: FeeQuote
    success_rate: float
    recent: OutcomeCounts
    state: CircuitState
    score: RouteScore
    probe: bool

    def sort_key(self) -> tuple[float, int, int, str]:
        return (round(self.score.total_bps, 9), self.fee.fee_minor, self.route.priority, self.route.route_id)


def decide(ctx: PaymentContext, snapshot: Snapshot, now: datetime) -> Decision:
    settings = snapshot.settings
    local = LocalTime.of(now, settings.utc_offset_minutes)
    rules = evaluate_rules(snapshot.rules, ctx, local)
    eligible: dict[str, _Eligible] = {}
    skipped: list[Skipped] = []
    for route_id in sorted(snapshot.routes):
        route = snapshot.routes[route_id]
        result = _check(route, ctx, snapshot, rules, local, now)
        if isinstance(result, Skipped):
            skipped.append(result)
        else:
            eligible[route_id] = result

    head: list[tuple[_Eligible, Placement, str]] = []
    preference = rules.preference
    if preference is not None and preference.action.kind is ActionKind.FORCE:
        forced_id = preference.action.route_ids[0]
        if forced_id in eligible:
            head.append((eligible[forced_id], Placement.FORCED, f"forced by rule {_rule_label(preference)}"))
        if preference.action.exclusive:
            for route_id in sorted(set(eligible) - {forced_id}):
                skipped.append(
                    Skipped(
                        route_id, SkipReason.FORCED_ELSEWHERE, f"rule {_rule_label(preference)} forces only {forced_id}"
                    )
                )
                del eligible[route_id]
    elif preference is not None and preference.action.kind is ActionKind.SPLIT:
        chosen = _split_choice(preference, eligible, ctx)
        if chosen is not None:
            head.append(chosen)

    placed = {item[0].route.route_id for item in head}
    rest = sorted((e for e in eligible.values() if e.route.route_id not in placed), key=_Eligible.sort_key)
    probes = [e for e in rest if e.state is CircuitState.HALF_OPEN and e.probe]
    healthy = [e for e in rest if e.state is CircuitState.CLOSED]
    last_resort = [e for e in rest if e.state is CircuitState.HALF_OPEN and not e.probe]
    ratio = settings.health.half_open_probe_ratio
    for e in probes:
        head.append(
            (e, Placement.PROBE, f"circuit half-open; this payment is one of the {ratio:.0%} that probe recovery")
        )
    for index, e in enumerate(healthy):
        head.append((e, Placement.SCORE, _score_reason(e, healthy[index + 1] if index + 1 < len(healthy) else None)))
    for e in last_resort:
        head.append((e, Placement.LAST_RESORT, "circuit half-open and this payment is not a probe: last resort"))

    for e, _, _ in head[settings.candidates_max :]:
        skipped.append(
            Skipped(
                e.route.route_id,
                SkipReason.BEYOND_CANDIDATES_MAX,
                f"only {settings.candidates_max} candidates are returned",
            )
        )
    candidates = tuple(
        _candidate(rank, e, placement, reason)
        for rank, (e, placement, reason) in enumerate(head[: settings.candidates_max], start=1)
    )
    return Decision(
        payment_id=ctx.payment_id,
        decided_at=now,
        candidates=candidates,
        skipped=tuple(sorted(skipped, key=lambda s: s.route_id)),
        matched_rule_ids=rules.matched_rule_ids,
        config_version=snapshot.config_version,
    )


def _check(
    route: Route,
    ctx: PaymentContext,
    snapshot: Snapshot,
    rules: RuleOutcome,
    local: LocalTime,
    now: datetime,
) -> _Eligible | Skipped:
    rid = route.route_id

    def skip(reason: SkipReason, explanation: str) -> Skipped:
        return Skipped(rid, reason, explanation)

    if rid in ctx.exclude_route_ids:
        return skip(SkipReason.EXCLUDED_BY_REQUEST, "the caller excluded it (already tried for this payment)")
    if not route.enabled:
        return skip(SkipReason.DISABLED, "the route is disabled")
    if route.method is not ctx.method:
        return skip(SkipReason.METHOD_MISMATCH, f"route takes {route.method.value}, payment is {ctx.method.value}")
    if ctx.scene not in route.scenes:
        return skip(SkipReason.SCENE_NOT_SUPPORTED, f"route does not offer scene {ctx.scene.value}")
    if route.payer_clients is not None and ctx.payer_client not in route.payer_clients:
        return skip(
            SkipReason.PAYER_CLIENT_NOT_SUPPORTED, f"route does not work in payer client {ctx.payer_client.value}"
        )
    if route.currency != ctx.currency:
        return skip(SkipReason.CURRENCY_MISMATCH, f"route settles {route.currency}, payment is {ctx.currency}")
    if ctx.amount_minor < route.amount_min_minor:
        return skip(
            SkipReason.AMOUNT_BELOW_MIN,
            f"amount {ctx.amount_minor} is below the route minimum {route.amount_min_minor}",
        )
    if route.amount_max_minor is not None and ctx.amount_minor > route.amount_max_minor:
        return skip(
            SkipReason.AMOUNT_ABOVE_MAX,
            f"amount {ctx.amount_minor} is above the route maximum {route.amount_max_minor}",
        )
    contract = snapshot.contracts.get((ctx.merchant_id, rid))
    if contract is None:
        return skip(SkipReason.NO_CONTRACT, f"merchant {ctx.merchant_id} has no contract on this route")
    if not contract.enabled:
        return skip(SkipReason.CONTRACT_DISABLED, f"merchant {ctx.merchant_id}'s contract on this route is disabled")
    if rules.allowed is not None and rid not in rules.allowed:
        return skip(
            SkipReason.NOT_ALLOWED_BY_RULE, f"not in the allow-list of rule(s) {', '.join(rules.allow_rule_ids)}"
        )
    if rid in rules.denied_by:
        return skip(SkipReason.DENIED_BY_RULE, f"denied by rule {rules.denied_by[rid]}")
    if not route.is_open(local):
        hours = ", ".join(w.describe() for w in route.opening_hours)
        return skip(
            SkipReason.OUTSIDE_OPENING_HOURS,
            f"open {hours} (local); now is {local.minute_of_day // 60:02d}:{local.minute_of_day % 60:02d}",
        )
    used = snapshot.volume_today_minor.get(rid, 0)
    if route.daily_volume_cap_minor is not None and used + ctx.amount_minor > route.daily_volume_cap_minor:
        return skip(
            SkipReason.DAILY_CAP_REACHED,
            f"daily volume cap {route.daily_volume_cap_minor}: {used} used on {local.date.isoformat()}, "
            f"this payment needs {ctx.amount_minor}",
        )
    industry = contract.industry or ctx.industry
    rate = rate_in_force(
        snapshot.rates.get(rid, ()), route_id=rid, merchant_id=ctx.merchant_id, industry=industry, at=now
    )
    if rate is None:
        return skip(SkipReason.NO_FEE_RATE, f"no fee rate in force at {now.isoformat()}")
    health = snapshot.health.get(rid) or RouteHealth()
    policy = snapshot.settings.health
    state = effective_state(health.breaker, now, policy)
    if state is CircuitState.OPEN:
        since = health.breaker.changed_at.isoformat() if health.breaker.changed_at else "?"
        return skip(SkipReason.CIRCUIT_OPEN, f"circuit open since {since}; half-open after {policy.open_seconds} s")
    fee = quote(rate, ctx.amount_minor)
    success_rate = estimate_success_rate(health.recent, route.expected_success_rate, policy.success_prior_weight)
    score = score_route(
        fee_minor=fee.fee_minor,
        amount_minor=ctx.amount_minor,
        success_rate=success_rate,
        mean_latency_ms=health.recent.mean_latency_ms,
        circuit_state=state,
        weights=snapshot.settings.weights,
    )
    probe = state is CircuitState.HALF_OPEN and below_ratio(
        probe_key(rid, ctx.payment_id), policy.half_open_probe_ratio
    )
    return _Eligible(route, contract, fee, success_rate, health.recent, state, score, probe)


def _split_choice(
    rule: Rule, eligible: Mapping[str, _Eligible], ctx: PaymentContext
) -> tuple[_Eligible, Placement, str] | None:
    """The split's route for this payment among those still usable (closed, or probing half-open)."""
    usable = [
        (route_id, weight)
        for route_id, weight in rule.action.weights
        if route_id in eligible and (eligible[route_id].state is CircuitState.CLOSED or eligible[route_id].probe)
    ]
    key = split_key(rule.rule_id, ctx.payment_id)
    chosen = pick_weighted(usable, key)
    if chosen is None:
        return None
    total = sum(w for _, w in usable)
    weight = dict(usable)[chosen]
    configured = sum(w for _, w in rule.action.weights)
    note = (
        ""
        if total == configured
        else f" (renormalised over the {len(usable)} usable routes of {len(rule.action.weights)})"
    )
    reason = (
        f"split rule {_rule_label(rule)}: weight {weight} of {total}{note}, payment bucket {unit_interval(key):.4f}"
    )
    return eligible[chosen], Placement.SPLIT, reason


def _score_reason(e: _Eligible, runner_up: _Eligible | None) -> str:
    if runner_up is None:
        return "ranked by expected cost"
    delta = runner_up.score.total_bps - e.score.total_bps
    return f"ranked by expected cost, {delta:.1f} bps below {runner_up.route.route_id}"


def _rule_label(rule: Rule) -> str:
    return f"{rule.rule_id} ({rule.name})"


def _candidate(rank: int, e: _Eligible, placement: Placement, reason: str) -> Candidate:
    latency = (
        "no latency data" if e.recent.mean_latency_ms is None else f"mean latency {e.recent.mean_latency_ms:.0f} ms"
    )
    explanation = (
        f"#{rank} {e.route.route_id}: {reason}; {e.fee.describe()}; success rate {e.success_rate:.1%} "
        f"({e.recent.attempts} attempts in window, prior {e.route.expected_success_rate:.0%}); {latency}; "
        f"circuit {e.state.value}; {e.score.describe()}"
    )
    return Candidate(
        rank=rank,
        route_id=e.route.route_id,
        method=e.route.method,
        kind=e.route.kind,
        provider=e.route.provider,
        connector=e.route.connector,
        config_ref=e.route.config_ref,
        sub_merchant_id=e.contract.sub_merchant_id,
        fee=e.fee,
        success_rate=e.success_rate,
        attempts_in_window=e.recent.attempts,
        mean_latency_ms=e.recent.mean_latency_ms,
        circuit_state=e.state,
        score=e.score,
        placement=placement,
        explanation=explanation,
    )
