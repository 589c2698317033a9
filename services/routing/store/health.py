"""Shared health state: attempt outcomes → success-rate buckets, daily volume and the circuit breaker.

Writers are the consumers of `cashier.payments` on any replica. Each outcome locks its route's
`route_health` row, applies the pure breaker function, and writes the result in the same transaction
as the inbox row, so concurrent consumers serialise per route and an event counts exactly once.
A consumed batch is one transaction: its first outcome of a route locks and reads the row, the others
reuse that copy, and each outcome's writes are one statement (docs/performance.md, routing).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ARRAY, Text, and_, bindparam, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx
from services.routing.domain.decide import RoutingSettings
from services.routing.domain.health import (
    Breaker,
    CircuitState,
    HealthPolicy,
    Outcome,
    Transition,
    advance,
    floor_time,
    on_outcome,
)
from services.routing.domain.model import LocalTime
from services.routing.events.types import CIRCUIT_EVENT_TYPES, TOPIC
from services.routing.store.settings import get_settings
from services.routing.store.tables import (
    counted_attempts,
    route_daily_volume,
    route_health,
    route_health_buckets,
)

SWEEP_BATCH_MAX = 100
PRUNE_BATCH_MAX = 5_000
COUNTED_ATTEMPTS_RETENTION = timedelta(days=2)
DAILY_VOLUME_RETENTION = timedelta(days=40)


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    route_id: str
    outcome: Outcome
    occurred_at: datetime
    latency_ms: int | None = None
    amount_minor: int | None = None  # counted into the daily volume when the attempt succeeded
    attempt_id: str | None = None  # de-duplicates one attempt reported by two events


def breaker_from_row(row: Any) -> Breaker:
    return Breaker(
        state=CircuitState(row["state"]),
        changed_at=row["changed_at"],
        consecutive_failures=row["consecutive_failures"],
        half_open_successes=row["half_open_successes"],
        window_start=row["window_start"],
        window_attempts=row["window_attempts"],
        window_failures=row["window_failures"],
        previous_attempts=row["previous_attempts"],
        previous_failures=row["previous_failures"],
    )


def _breaker_values(breaker: Breaker) -> dict[str, Any]:
    return {
        "state": breaker.state.value,
        "changed_at": breaker.changed_at,
        "consecutive_failures": breaker.consecutive_failures,
        "half_open_successes": breaker.half_open_successes,
        "window_start": breaker.window_start,
        "window_attempts": breaker.window_attempts,
        "window_failures": breaker.window_failures,
        "previous_attempts": breaker.previous_attempts,
        "previous_failures": breaker.previous_failures,
    }


async def _save_breaker(conn: AsyncConnection, route_id: str, breaker: Breaker, now: datetime) -> None:
    await conn.execute(
        update(route_health)
        .where(route_health.c.route_id == route_id)
        .values(**_breaker_values(breaker), updated_at=now)
    )


def publish_transitions(tx: Tx, route_id: str, transitions: list[Transition]) -> None:
    for t in transitions:
        tx.publish(
            topic=TOPIC,
            type=CIRCUIT_EVENT_TYPES[t.to_state],
            subject=route_id,
            data={
                "route_id": route_id,
                "from_state": t.from_state.value,
                "to_state": t.to_state.value,
                "at": t.at.isoformat(),
                "reason": t.reason,
            },
        )


@dataclass(slots=True)
class _TxHealth:
    """What one transaction already holds: the breakers it locked (as last written by it) and the settings it
    read. Outcomes of a fetched batch are applied in one transaction (libs/common/inbox.py), so a route's row
    is locked and read once per batch rather than once per outcome; no other writer can change a locked row
    before the commit (the sweep skips locked rows), so the held copy stays the row's value."""

    breakers: dict[str, Breaker] = field(default_factory=dict)
    settings: RoutingSettings | None = None


# Keyed by the transaction, not the connection: a rolled-back batch's locks and writes are gone, and its
# fall-back runs each event in a new transaction, which starts with nothing held.
_held: weakref.WeakKeyDictionary[object, _TxHealth] = weakref.WeakKeyDictionary()


def _held_by(tx: Tx) -> _TxHealth:
    transaction = tx.conn.sync_connection.get_transaction() if tx.conn.sync_connection is not None else None
    if transaction is None:  # not in a transaction: hold nothing beyond this call
        return _TxHealth()
    held = _held.get(transaction)
    if held is None:
        held = _held[transaction] = _TxHealth()
    return held


async def settings_in(tx: Tx) -> RoutingSettings:
    """The routing settings as this transaction first read them: one read per consumed batch."""
    held = _held_by(tx)
    if held.settings is None:
        held.settings = (await get_settings(tx.conn)).settings
    return held.settings


# A run of outcomes (the inbox's batch, libs/common/inbox.py) in three statements whatever its length
# (docs/performance.md, fifth pass): the attempt ids claimed (and every route's breaker row made to exist), the
# breaker rows not yet held locked in route order (two replicas' runs wait for each other, never deadlock), then
# the breakers, the success-rate buckets and the daily volumes written at once, summed per row in Python.
_CLAIM = text(
    """
WITH ensured AS (
    INSERT INTO route_health (route_id, state, consecutive_failures, half_open_successes, window_attempts,
        window_failures, previous_attempts, previous_failures)
    SELECT r, CAST(:closed AS text), 0, 0, 0, 0, 0, 0 FROM unnest(CAST(:routes AS text[])) AS r
    ON CONFLICT (route_id) DO NOTHING
)
INSERT INTO counted_attempts (attempt_id, route_id, counted_at)
SELECT a.attempt_id, a.route_id, CAST(:now AS timestamptz)
FROM unnest(CAST(:attempt_ids AS text[]), CAST(:attempt_routes AS text[])) AS a (attempt_id, route_id)
ON CONFLICT (attempt_id) DO NOTHING
RETURNING attempt_id
"""
)
_LOCK = (
    select(route_health)
    .where(route_health.c.route_id == func.any(bindparam("routes", type_=ARRAY(Text))))
    .order_by(route_health.c.route_id)
    .with_for_update()
)
_WRITE = text(
    """
WITH breakers AS (
    UPDATE route_health AS h SET
        state = v.state, changed_at = v.changed_at, consecutive_failures = v.consecutive_failures,
        half_open_successes = v.half_open_successes, window_start = v.window_start,
        window_attempts = v.window_attempts, window_failures = v.window_failures,
        previous_attempts = v.previous_attempts, previous_failures = v.previous_failures,
        updated_at = CAST(:now AS timestamptz)
    FROM unnest(CAST(:b_route AS text[]), CAST(:b_state AS text[]), CAST(:b_changed_at AS timestamptz[]),
        CAST(:b_consecutive_failures AS integer[]), CAST(:b_half_open_successes AS integer[]),
        CAST(:b_window_start AS timestamptz[]), CAST(:b_window_attempts AS integer[]),
        CAST(:b_window_failures AS integer[]), CAST(:b_previous_attempts AS integer[]),
        CAST(:b_previous_failures AS integer[]))
        AS v (route_id, state, changed_at, consecutive_failures, half_open_successes, window_start,
            window_attempts, window_failures, previous_attempts, previous_failures)
    WHERE h.route_id = v.route_id
), buckets AS (
    INSERT INTO route_health_buckets AS b (route_id, bucket_start, attempts, succeeded, declined, errors, timeouts,
        latency_ms_sum, latency_samples)
    SELECT * FROM unnest(CAST(:k_route AS text[]), CAST(:k_start AS timestamptz[]), CAST(:k_attempts AS integer[]),
        CAST(:k_succeeded AS integer[]), CAST(:k_declined AS integer[]), CAST(:k_errors AS integer[]),
        CAST(:k_timeouts AS integer[]), CAST(:k_latency_ms_sum AS bigint[]), CAST(:k_latency_samples AS integer[]))
    ON CONFLICT (route_id, bucket_start) DO UPDATE SET
        attempts = b.attempts + EXCLUDED.attempts, succeeded = b.succeeded + EXCLUDED.succeeded,
        declined = b.declined + EXCLUDED.declined, errors = b.errors + EXCLUDED.errors,
        timeouts = b.timeouts + EXCLUDED.timeouts, latency_ms_sum = b.latency_ms_sum + EXCLUDED.latency_ms_sum,
        latency_samples = b.latency_samples + EXCLUDED.latency_samples
), volume AS (
    INSERT INTO route_daily_volume AS v (route_id, local_date, volume_minor, payment_count)
    SELECT * FROM unnest(CAST(:d_route AS text[]), CAST(:d_date AS date[]), CAST(:d_volume AS bigint[]),
        CAST(:d_count AS bigint[]))
    ON CONFLICT (route_id, local_date) DO UPDATE SET
        volume_minor = v.volume_minor + EXCLUDED.volume_minor, payment_count = v.payment_count + EXCLUDED.payment_count
)
SELECT 1
"""
)

_BUCKET_FIELDS = ("attempts", "succeeded", "declined", "errors", "timeouts", "latency_ms_sum", "latency_samples")


async def record_outcome(
    tx: Tx, outcome: AttemptOutcome, *, now: datetime, settings: RoutingSettings
) -> list[Transition]:
    """`record_outcomes` of one outcome: the circuit transitions it caused."""
    return [t for _, t in await record_outcomes(tx, [outcome], now=now, settings=settings)]


async def record_outcomes(
    tx: Tx, outcomes: Sequence[AttemptOutcome], *, now: datetime, settings: RoutingSettings
) -> list[tuple[str, Transition]]:
    """Count attempt outcomes, in order, everywhere they matter; returns the circuit transitions they caused (route,
    transition), each also published.

    Three statements for the run: an attempt already counted (before, or earlier in the run) changes nothing; each
    route's breaker row is locked and read by the first run of this transaction that touches it and the held copy
    reused by later runs (nobody else can change a row this transaction locked; the sweep skips locked rows)."""
    held = _held_by(tx)
    claims = {o.attempt_id: o.route_id for o in reversed(outcomes) if o.attempt_id is not None}  # first report's
    routes = sorted({o.route_id for o in outcomes} - held.breakers.keys())
    claimed = set(
        (
            await tx.conn.execute(
                _CLAIM,
                {
                    "closed": CircuitState.CLOSED.value,
                    "routes": routes,
                    "now": now,
                    "attempt_ids": list(claims),
                    "attempt_routes": list(claims.values()),
                },
            )
        ).scalars()
    )
    counted = []
    for o in outcomes:  # an attempt claimed now counts once: at its first report
        if o.attempt_id is None:
            counted.append(o)
        elif o.attempt_id in claimed:
            counted.append(o)
            claimed.discard(o.attempt_id)
    if not counted:
        return []
    to_lock = sorted({o.route_id for o in counted} - held.breakers.keys())
    if to_lock:
        for row in (await tx.conn.execute(_LOCK, {"routes": to_lock})).mappings():
            held.breakers[row["route_id"]] = breaker_from_row(row)
    policy = settings.health
    transitions: list[tuple[str, Transition]] = []
    buckets: dict[tuple[str, datetime], list[int]] = {}
    volumes: dict[tuple[str, date], list[int]] = {}
    changed: dict[str, Breaker] = {}
    for o in counted:
        breaker, caused = on_outcome(held.breakers[o.route_id], o.outcome, now, policy)
        held.breakers[o.route_id] = changed[o.route_id] = breaker
        transitions.extend((o.route_id, t) for t in caused)
        occurred_at = min(o.occurred_at, now)  # a sender's clock ahead of ours must not write the future
        if occurred_at > now - timedelta(seconds=policy.success_window_seconds):
            sums = buckets.setdefault((o.route_id, floor_time(occurred_at, policy.bucket_seconds)), [0] * 7)
            latency = (o.latency_ms or 0, int(o.latency_ms is not None))
            counts = (1, *(int(o.outcome is k) for k in _COUNTED_KINDS), *latency)
            for i, n in enumerate(counts):
                sums[i] += n
        if o.outcome is Outcome.SUCCEEDED and o.amount_minor:
            day = volumes.setdefault((o.route_id, LocalTime.of(occurred_at, settings.utc_offset_minutes).date), [0, 0])
            day[0] += o.amount_minor
            day[1] += 1
    values = [_breaker_values(b) for b in changed.values()]
    await tx.conn.execute(
        _WRITE,
        {
            "now": now,
            "b_route": list(changed),
            **{f"b_{name}": [v[name] for v in values] for name in _BREAKER_FIELDS},
            "k_route": [route for route, _ in buckets],
            "k_start": [start for _, start in buckets],
            **{f"k_{name}": [sums[i] for sums in buckets.values()] for i, name in enumerate(_BUCKET_FIELDS)},
            "d_route": [route for route, _ in volumes],
            "d_date": [day for _, day in volumes],
            "d_volume": [v[0] for v in volumes.values()],
            "d_count": [v[1] for v in volumes.values()],
        },
    )
    for route_id, transition in transitions:
        publish_transitions(tx, route_id, [transition])
    return transitions


_COUNTED_KINDS = (Outcome.SUCCEEDED, Outcome.DECLINED, Outcome.ERROR, Outcome.TIMEOUT)
_BREAKER_FIELDS = tuple(_breaker_values(Breaker()))


def _open_and_due(now: datetime, policy: HealthPolicy) -> Any:
    due = now - timedelta(seconds=policy.open_seconds)
    return and_(route_health.c.state == CircuitState.OPEN.value, route_health.c.changed_at <= due)


async def any_open_circuit_due(conn: AsyncConnection, *, now: datetime, policy: HealthPolicy) -> bool:
    """Whether the sweep has anything to record: one read without a transaction, so an idle sweep round is not
    BEGIN, a locking select and COMMIT. A hint only: the sweep re-selects under its row locks."""
    return bool(await conn.scalar(select(select(route_health.c.route_id).where(_open_and_due(now, policy)).exists())))


async def sweep_open_circuits(tx: Tx, *, now: datetime, policy: HealthPolicy) -> int:
    """Record open → half_open for circuits whose cool-down has ended, and publish it. Any replica may run it."""
    rows = (
        (
            await tx.conn.execute(
                select(route_health)
                .where(_open_and_due(now, policy))
                .order_by(route_health.c.route_id)
                .limit(SWEEP_BATCH_MAX)
                .with_for_update(skip_locked=True)
            )
        )
        .mappings()
        .all()
    )
    for row in rows:
        breaker, transitions = advance(breaker_from_row(row), now, policy)
        await _save_breaker(tx.conn, row["route_id"], breaker, now)
        publish_transitions(tx, row["route_id"], transitions)
    return len(rows)


async def prune(conn: AsyncConnection, *, now: datetime, policy: HealthPolicy) -> int:
    """Delete buckets, attempt ids and volumes past their use, in bounded batches."""
    bucket_cutoff = now - timedelta(seconds=policy.success_window_seconds + policy.bucket_seconds)
    deleted = 0
    for table, column, cutoff in (
        (route_health_buckets, "bucket_start", bucket_cutoff),
        (counted_attempts, "counted_at", now - COUNTED_ATTEMPTS_RETENTION),
    ):
        result = await conn.execute(
            text(
                f"DELETE FROM {table.name} WHERE ctid IN "
                f"(SELECT ctid FROM {table.name} WHERE {column} < :cutoff LIMIT {PRUNE_BATCH_MAX})"
            ),
            {"cutoff": cutoff},
        )
        deleted += result.rowcount or 0
    result = await conn.execute(
        delete(route_daily_volume).where(route_daily_volume.c.local_date < (now - DAILY_VOLUME_RETENTION).date())
    )
    return deleted + (result.rowcount or 0)


@dataclass(frozen=True, slots=True)
class RouteHealthView:
    route_id: str
    breaker: Breaker


async def list_breakers(conn: AsyncConnection) -> list[RouteHealthView]:
    rows = (await conn.execute(select(route_health).order_by(route_health.c.route_id))).mappings().all()
    return [RouteHealthView(r["route_id"], breaker_from_row(r)) for r in rows]
