"""Scoring: rank eligible routes by expected cost, in basis points of the payment amount.

    expected_cost_bps = fee_weight · fee_bps
                      + failure_penalty_bps · (1 − success_rate)
                      + latency_penalty_bps_per_second · mean_latency_seconds
                      + health_penalty_bps   (half-open routes)

`fee_bps` is the route's actual fee for this amount (min/max/fixed fees included) over the amount.
`failure_penalty_bps` says what a failed attempt costs the platform in the same unit as fees (a
lost or delayed sale, a second attempt, payer friction): with 300 bps, a route 1 % less likely to
succeed must be at least 3 bps cheaper to win. Every weight is platform-tunable; lower cost wins.
These are ranking scores, not money: floats are fine here and deterministic for equal inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.routing.domain.errors import FieldError
from services.routing.domain.health import CircuitState


@dataclass(frozen=True, slots=True)
class ScoringWeights:
    fee_weight: float = 1.0
    failure_penalty_bps: float = 300.0
    latency_penalty_bps_per_second: float = 1.0
    half_open_penalty_bps: float = 50.0

    def validate(self) -> list[FieldError]:
        errors: list[FieldError] = []
        for name in ("fee_weight", "failure_penalty_bps", "latency_penalty_bps_per_second", "half_open_penalty_bps"):
            if not 0 <= getattr(self, name) <= 1_000_000:
                errors.append(FieldError(f"weights.{name}", "must be between 0 and 1000000"))
        return errors


@dataclass(frozen=True, slots=True)
class RouteScore:
    fee_bps: float
    failure_bps: float
    latency_bps: float
    health_bps: float

    @property
    def total_bps(self) -> float:
        return self.fee_bps + self.failure_bps + self.latency_bps + self.health_bps

    def describe(self) -> str:
        return (
            f"expected cost {self.total_bps:.1f} bps = fee {self.fee_bps:.1f} + failure risk "
            f"{self.failure_bps:.1f} + latency {self.latency_bps:.1f} + health {self.health_bps:.1f}"
        )


def score_route(
    *,
    fee_minor: int,
    amount_minor: int,
    success_rate: float,
    mean_latency_ms: float | None,
    circuit_state: CircuitState,
    weights: ScoringWeights,
) -> RouteScore:
    fee_bps = fee_minor * 10_000 / amount_minor
    return RouteScore(
        fee_bps=weights.fee_weight * fee_bps,
        failure_bps=weights.failure_penalty_bps * (1.0 - success_rate),
        latency_bps=weights.latency_penalty_bps_per_second * (mean_latency_ms or 0.0) / 1000.0,
        health_bps=weights.half_open_penalty_bps if circuit_state is CircuitState.HALF_OPEN else 0.0,
    )
