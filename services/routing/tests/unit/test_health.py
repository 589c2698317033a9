from __future__ import annotations

from datetime import timedelta

from services.routing.domain.health import (
    Breaker,
    CircuitState,
    HealthPolicy,
    Outcome,
    OutcomeCounts,
    Transition,
    advance,
    effective_state,
    estimate_success_rate,
    floor_time,
    on_outcome,
    window_counts,
)
from services.routing.tests.unit.builders import T0

POLICY = HealthPolicy(
    breaker_window_seconds=60,
    min_attempts=10,
    failure_ratio_to_open=0.5,
    consecutive_failures_to_open=5,
    open_seconds=30,
    half_open_successes_to_close=3,
)


def feed(
    breaker: Breaker, outcomes: list[Outcome], start_offset_seconds: float = 0.0, step_seconds: float = 0.1
) -> tuple[Breaker, list[Transition]]:
    transitions: list[Transition] = []
    for index, outcome in enumerate(outcomes):
        at = T0 + timedelta(seconds=start_offset_seconds + index * step_seconds)
        breaker, changed = on_outcome(breaker, outcome, at, POLICY)
        transitions.extend(changed)
    return breaker, transitions


def test_consecutive_failures_open_the_circuit() -> None:
    breaker, transitions = feed(Breaker(), [Outcome.SUCCEEDED] + [Outcome.ERROR] * 4)
    assert breaker.state is CircuitState.CLOSED
    breaker, transitions = feed(breaker, [Outcome.TIMEOUT], start_offset_seconds=1)
    assert breaker.state is CircuitState.OPEN
    assert [(t.from_state, t.to_state) for t in transitions] == [(CircuitState.CLOSED, CircuitState.OPEN)]
    assert "5 failures in a row" in transitions[0].reason


def test_a_success_resets_the_consecutive_count_but_the_failure_ratio_still_opens() -> None:
    pattern = [Outcome.ERROR, Outcome.ERROR, Outcome.SUCCEEDED] * 3 + [Outcome.ERROR, Outcome.ERROR]
    breaker, transitions = feed(Breaker(), pattern)
    assert breaker.state is CircuitState.OPEN
    assert "failure ratio" in transitions[0].reason


def test_declines_never_trip_the_breaker() -> None:
    breaker, transitions = feed(Breaker(), [Outcome.DECLINED] * 50)
    assert breaker.state is CircuitState.CLOSED and not transitions


def test_failures_spread_below_the_ratio_keep_it_closed() -> None:
    pattern = ([Outcome.ERROR] + [Outcome.SUCCEEDED] * 3) * 20  # 25 % failures, never 5 in a row
    breaker, transitions = feed(Breaker(), pattern)
    assert breaker.state is CircuitState.CLOSED and not transitions


def test_old_failures_slide_out_of_the_window() -> None:
    breaker, _ = feed(Breaker(), [Outcome.ERROR, Outcome.ERROR, Outcome.SUCCEEDED] * 3)
    # Three minutes later the old failures no longer count: 4 failures out of 5 fresh attempts is
    # below min_attempts, so the circuit stays closed.
    breaker, transitions = feed(breaker, [Outcome.ERROR, Outcome.ERROR, Outcome.SUCCEEDED, Outcome.ERROR], 180)
    assert breaker.state is CircuitState.CLOSED and not transitions


def test_open_becomes_half_open_after_the_cool_down_then_closes_on_probe_successes() -> None:
    breaker, _ = feed(Breaker(), [Outcome.ERROR] * 5)
    opened_at = breaker.changed_at
    assert opened_at is not None
    assert effective_state(breaker, opened_at + timedelta(seconds=29), POLICY) is CircuitState.OPEN
    assert effective_state(breaker, opened_at + timedelta(seconds=30), POLICY) is CircuitState.HALF_OPEN
    # Late outcomes of attempts started before opening change nothing while open.
    late, changed = on_outcome(breaker, Outcome.SUCCEEDED, opened_at + timedelta(seconds=1), POLICY)
    assert late == breaker and not changed
    breaker, transitions = feed(breaker, [Outcome.SUCCEEDED, Outcome.DECLINED, Outcome.SUCCEEDED], 40)
    assert breaker.state is CircuitState.CLOSED
    assert [(t.from_state, t.to_state) for t in transitions] == [
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]
    assert transitions[0].at == opened_at + timedelta(seconds=30)
    # Counters restarted: the burst that opened it does not re-open it on the next failure.
    breaker, transitions = feed(breaker, [Outcome.ERROR], 41)
    assert breaker.state is CircuitState.CLOSED and not transitions


def test_a_failed_probe_reopens_for_another_cool_down() -> None:
    breaker, _ = feed(Breaker(), [Outcome.ERROR] * 5)
    breaker, transitions = feed(breaker, [Outcome.SUCCEEDED, Outcome.TIMEOUT], 40)
    assert breaker.state is CircuitState.OPEN
    assert breaker.changed_at == T0 + timedelta(seconds=40.1)
    assert transitions[-1].to_state is CircuitState.OPEN and "probe failed" in transitions[-1].reason


def test_advance_records_the_time_driven_half_open_once() -> None:
    breaker, _ = feed(Breaker(), [Outcome.ERROR] * 5)
    same, changed = advance(breaker, T0 + timedelta(seconds=10), POLICY)
    assert same == breaker and not changed
    half, changed = advance(breaker, T0 + timedelta(seconds=100), POLICY)
    assert half.state is CircuitState.HALF_OPEN and len(changed) == 1
    again, changed = advance(half, T0 + timedelta(seconds=200), POLICY)
    assert again == half and not changed


def test_window_counts_sum_only_recent_buckets_and_latency_is_averaged() -> None:
    counts = OutcomeCounts().add(Outcome.SUCCEEDED, 100).add(Outcome.ERROR, 300).add(Outcome.TIMEOUT, None)
    assert (counts.attempts, counts.succeeded, counts.errors, counts.timeouts) == (3, 1, 1, 1)
    assert counts.mean_latency_ms == 200
    now = floor_time(T0, 10)
    buckets = [(now - timedelta(seconds=s), counts) for s in (0, 10, 290, 300, 600)]
    total = window_counts(buckets, now, 300)
    assert total.attempts == 9  # 0, 10 and 290 s ago; 300 s ago is outside (now - 300, now]


def test_success_rate_is_smoothed_towards_the_prior() -> None:
    assert estimate_success_rate(OutcomeCounts(), 0.95, 20) == 0.95
    two_failures = OutcomeCounts().add(Outcome.ERROR, None).add(Outcome.ERROR, None)
    assert 0.8 < estimate_success_rate(two_failures, 0.95, 20) < 0.95
    many = OutcomeCounts(attempts=10_000, succeeded=6_000)
    assert abs(estimate_success_rate(many, 0.95, 20) - 0.6) < 0.001


def test_policy_validation() -> None:
    assert HealthPolicy().validate() == []
    bad = HealthPolicy(bucket_seconds=7, success_window_seconds=300, failure_ratio_to_open=0, half_open_probe_ratio=2)
    fields = {e.field for e in bad.validate()}
    assert fields == {
        "health.success_window_seconds",
        "health.failure_ratio_to_open",
        "health.half_open_probe_ratio",
    }
