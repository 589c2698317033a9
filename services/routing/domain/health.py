"""Route health: success-rate windows and the circuit breaker, as pure functions of outcome counts.

Outcomes (what the cashier reports per attempt):
- `succeeded`: the payer paid.
- `declined`: the channel answered and refused for a payer/business reason (insufficient balance,
  risk control). It lowers the success rate but proves the channel is up, so it never trips the breaker.
- `error`: the channel failed (5xx, unverifiable reply, a refusal the connector marks retryable).
- `timeout`: the channel did not answer in time.

Success rate: counts are kept in fixed buckets (`bucket_seconds`); the estimate over the last
`window_seconds` is smoothed towards the route's expected rate as if `prior_weight` attempts had
been seen at that rate, so a route with 2 attempts is neither 0 % nor 100 %.

Circuit breaker (one record per route, updated under a row lock by whichever replica consumes the
event, so every replica sees the same state):
- closed → open: on a failure when `consecutive_failures_to_open` failures happened in a row, or
  the sliding-window failure ratio (errors+timeouts over attempts, at least `min_attempts`) reaches
  `failure_ratio_to_open`. The window is a sliding-window counter: the current fixed window plus the
  previous one weighted by how much of it still overlaps the last `window_seconds`.
- open → half_open: by time alone, `open_seconds` after opening. Deciders compute it from the
  stored `changed_at`, so no writer is needed for it to take effect; a sweep records it for events.
- half_open: a share (`half_open_probe_ratio`) of payments, chosen by hashing the payment id, try the
  route first as probes; `half_open_successes_to_close` successes (or declines) close it, one
  failure re-opens it for another `open_seconds`.
Window counters restart at every state change so a burst that opened the circuit cannot re-open
it right after recovery.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from services.routing.domain.errors import FieldError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Outcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    ERROR = "error"
    TIMEOUT = "timeout"

    @property
    def is_failure(self) -> bool:
        """A failure of the route (not of the payer): what the breaker counts."""
        return self in (Outcome.ERROR, Outcome.TIMEOUT)


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def floor_time(at: datetime, step_seconds: int) -> datetime:
    """The start of the fixed `step_seconds` slot (aligned to the Unix epoch) that contains `at`."""
    seconds = int((at - EPOCH).total_seconds())
    return EPOCH + timedelta(seconds=seconds - seconds % step_seconds)


# --- success rate and latency --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutcomeCounts:
    attempts: int = 0
    succeeded: int = 0
    declined: int = 0
    errors: int = 0
    timeouts: int = 0
    latency_ms_sum: int = 0
    latency_samples: int = 0

    def add(self, outcome: Outcome, latency_ms: int | None) -> OutcomeCounts:
        return OutcomeCounts(
            attempts=self.attempts + 1,
            succeeded=self.succeeded + (outcome is Outcome.SUCCEEDED),
            declined=self.declined + (outcome is Outcome.DECLINED),
            errors=self.errors + (outcome is Outcome.ERROR),
            timeouts=self.timeouts + (outcome is Outcome.TIMEOUT),
            latency_ms_sum=self.latency_ms_sum + (latency_ms or 0),
            latency_samples=self.latency_samples + (latency_ms is not None),
        )

    def merge(self, other: OutcomeCounts) -> OutcomeCounts:
        return OutcomeCounts(
            self.attempts + other.attempts,
            self.succeeded + other.succeeded,
            self.declined + other.declined,
            self.errors + other.errors,
            self.timeouts + other.timeouts,
            self.latency_ms_sum + other.latency_ms_sum,
            self.latency_samples + other.latency_samples,
        )

    @property
    def mean_latency_ms(self) -> float | None:
        return self.latency_ms_sum / self.latency_samples if self.latency_samples else None


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """Platform-tunable health parameters (stored with the routing settings)."""

    bucket_seconds: int = 10
    success_window_seconds: int = 300
    success_prior_weight: float = 20.0
    breaker_window_seconds: int = 60
    min_attempts: int = 10
    failure_ratio_to_open: float = 0.5
    consecutive_failures_to_open: int = 5
    open_seconds: int = 30
    half_open_probe_ratio: float = 0.2
    half_open_successes_to_close: int = 3

    def validate(self) -> list[FieldError]:
        errors: list[FieldError] = []
        positive_ints = {
            "bucket_seconds": (1, 3600),
            "success_window_seconds": (1, 7 * 86400),
            "breaker_window_seconds": (1, 86400),
            "min_attempts": (1, 100_000),
            "consecutive_failures_to_open": (1, 100_000),
            "open_seconds": (1, 86400),
            "half_open_successes_to_close": (1, 100_000),
        }
        for name, (low, high) in positive_ints.items():
            if not low <= getattr(self, name) <= high:
                errors.append(FieldError(f"health.{name}", f"must be between {low} and {high}"))
        if self.success_window_seconds % self.bucket_seconds:
            errors.append(FieldError("health.success_window_seconds", "must be a multiple of bucket_seconds"))
        if not 0 <= self.success_prior_weight <= 1_000_000:
            errors.append(FieldError("health.success_prior_weight", "must be between 0 and 1000000"))
        if not 0 < self.failure_ratio_to_open <= 1:
            errors.append(FieldError("health.failure_ratio_to_open", "must be in (0, 1]"))
        if not 0 < self.half_open_probe_ratio <= 1:
            errors.append(FieldError("health.half_open_probe_ratio", "must be in (0, 1]"))
        return errors


def window_counts(
    buckets: Iterable[tuple[datetime, OutcomeCounts]], now: datetime, window_seconds: int
) -> OutcomeCounts:
    """Sum of the buckets that start within (now - window, now]."""
    oldest = now - timedelta(seconds=window_seconds)
    total = OutcomeCounts()
    for start, counts in buckets:
        if oldest < start <= now:
            total = total.merge(counts)
    return total


def estimate_success_rate(counts: OutcomeCounts, prior: float, prior_weight: float) -> float:
    """Success rate with a Beta-style prior: (succeeded + prior·w) / (attempts + w)."""
    denominator = counts.attempts + prior_weight
    if denominator <= 0:
        return prior
    return (counts.succeeded + prior * prior_weight) / denominator


# --- circuit breaker -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Breaker:
    state: CircuitState = CircuitState.CLOSED
    changed_at: datetime | None = None
    consecutive_failures: int = 0
    half_open_successes: int = 0
    window_start: datetime | None = None
    window_attempts: int = 0
    window_failures: int = 0
    previous_attempts: int = 0
    previous_failures: int = 0


@dataclass(frozen=True, slots=True)
class Transition:
    from_state: CircuitState
    to_state: CircuitState
    at: datetime
    reason: str


def effective_state(breaker: Breaker, now: datetime, policy: HealthPolicy) -> CircuitState:
    """The state in force at `now`: an open circuit is half-open once `open_seconds` have passed."""
    opened_at = breaker.changed_at
    if breaker.state is CircuitState.OPEN and opened_at is not None:
        return CircuitState.HALF_OPEN if now >= opened_at + timedelta(seconds=policy.open_seconds) else breaker.state
    return breaker.state


def sliding_failures(breaker: Breaker, now: datetime, policy: HealthPolicy) -> tuple[float, float]:
    """(attempts, failures) over the last breaker window, by the sliding-window-counter estimate."""
    rolled = _roll(breaker, now, policy)
    assert rolled.window_start is not None
    elapsed = (now - rolled.window_start).total_seconds() / policy.breaker_window_seconds
    carry = max(0.0, 1.0 - elapsed)
    return (
        rolled.window_attempts + rolled.previous_attempts * carry,
        rolled.window_failures + rolled.previous_failures * carry,
    )


def _roll(breaker: Breaker, now: datetime, policy: HealthPolicy) -> Breaker:
    start = floor_time(now, policy.breaker_window_seconds)
    if breaker.window_start == start:
        return breaker
    window = timedelta(seconds=policy.breaker_window_seconds)
    if breaker.window_start is not None and breaker.window_start + window == start:
        return replace(
            breaker,
            window_start=start,
            window_attempts=0,
            window_failures=0,
            previous_attempts=breaker.window_attempts,
            previous_failures=breaker.window_failures,
        )
    if breaker.window_start is not None and breaker.window_start > start:
        return breaker  # a clock step backwards: keep counting in the newer window
    return replace(
        breaker, window_start=start, window_attempts=0, window_failures=0, previous_attempts=0, previous_failures=0
    )


def _enter(breaker: Breaker, state: CircuitState, at: datetime) -> Breaker:
    """A fresh record in `state` since `at`: counters restart with every state change."""
    return Breaker(state=state, changed_at=at)


def advance(breaker: Breaker, now: datetime, policy: HealthPolicy) -> tuple[Breaker, list[Transition]]:
    """Record the time-driven open → half_open change, if due (the sweep and on_outcome use it)."""
    if breaker.state is CircuitState.OPEN and effective_state(breaker, now, policy) is CircuitState.HALF_OPEN:
        assert breaker.changed_at is not None
        at = breaker.changed_at + timedelta(seconds=policy.open_seconds)
        transition = Transition(
            CircuitState.OPEN, CircuitState.HALF_OPEN, at, f"open for {policy.open_seconds} s; probing recovery"
        )
        return _enter(breaker, CircuitState.HALF_OPEN, at), [transition]
    return breaker, []


def on_outcome(
    breaker: Breaker, outcome: Outcome, now: datetime, policy: HealthPolicy
) -> tuple[Breaker, list[Transition]]:
    """The breaker after one attempt outcome observed at `now`, and the state changes it caused."""
    breaker, transitions = advance(breaker, now, policy)
    if breaker.state is CircuitState.OPEN:
        # Outcomes of attempts started before the circuit opened: they change nothing.
        return breaker, transitions
    if breaker.state is CircuitState.HALF_OPEN:
        if outcome.is_failure:
            transitions.append(
                Transition(CircuitState.HALF_OPEN, CircuitState.OPEN, now, f"probe failed ({outcome.value})")
            )
            return _enter(breaker, CircuitState.OPEN, now), transitions
        successes = breaker.half_open_successes + 1
        if successes >= policy.half_open_successes_to_close:
            transitions.append(
                Transition(CircuitState.HALF_OPEN, CircuitState.CLOSED, now, f"{successes} probes answered; recovered")
            )
            return _enter(breaker, CircuitState.CLOSED, now), transitions
        return replace(breaker, half_open_successes=successes), transitions

    rolled = _roll(breaker, now, policy)
    rolled = replace(
        rolled,
        window_attempts=rolled.window_attempts + 1,
        window_failures=rolled.window_failures + outcome.is_failure,
        consecutive_failures=rolled.consecutive_failures + 1 if outcome.is_failure else 0,
    )
    if not outcome.is_failure:
        return rolled, transitions
    if rolled.consecutive_failures >= policy.consecutive_failures_to_open:
        reason = f"{rolled.consecutive_failures} failures in a row"
    else:
        attempts, failures = sliding_failures(rolled, now, policy)
        if attempts < policy.min_attempts or failures / attempts < policy.failure_ratio_to_open:
            return rolled, transitions
        reason = (
            f"failure ratio {failures / attempts:.0%} over ~{attempts:.0f} attempts in "
            f"{policy.breaker_window_seconds} s"
        )
    transitions.append(Transition(CircuitState.CLOSED, CircuitState.OPEN, now, reason))
    return _enter(rolled, CircuitState.OPEN, now), transitions
