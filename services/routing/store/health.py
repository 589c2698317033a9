"""Shared health state: attempt outcomes → success-rate buckets, daily volume and the circuit breaker.

Writers are the consumers of `cashier.payments` on any replica. Each outcome locks its route's
`route_health` row, applies the pure breaker function, and writes the result in the same transaction
as the inbox row, so concurrent consumers serialise per route and an event counts exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
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


async def _lock_breaker(conn: AsyncConnection, route_id: str) -> Breaker:
    await conn.execute(
        pg_insert(route_health)
        .values(route_id=route_id, **_breaker_values(Breaker()))
        .on_conflict_do_nothing(index_elements=["route_id"])
    )
    row = (
        (await conn.execute(select(route_health).where(route_health.c.route_id == route_id).with_for_update()))
        .mappings()
        .one()
    )
    return breaker_from_row(row)


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


async def record_outcome(
    tx: Tx, outcome: AttemptOutcome, *, now: datetime, settings: RoutingSettings
) -> list[Transition]:
    """Count one attempt outcome everywhere it matters; returns the circuit transitions it caused."""
    conn = tx.conn
    if outcome.attempt_id is not None:
        inserted = await conn.execute(
            pg_insert(counted_attempts)
            .values(attempt_id=outcome.attempt_id, route_id=outcome.route_id, counted_at=now)
            .on_conflict_do_nothing(index_elements=["attempt_id"])
            .returning(counted_attempts.c.attempt_id)
        )
        if inserted.first() is None:
            return []
    policy = settings.health
    breaker = await _lock_breaker(conn, outcome.route_id)
    breaker, transitions = on_outcome(breaker, outcome.outcome, now, policy)
    await _save_breaker(conn, outcome.route_id, breaker, now)

    occurred_at = min(outcome.occurred_at, now)  # a sender's clock ahead of ours must not write the future
    if occurred_at > now - timedelta(seconds=policy.success_window_seconds):
        await _add_to_bucket(conn, outcome, floor_time(occurred_at, policy.bucket_seconds))
    if outcome.outcome is Outcome.SUCCEEDED and outcome.amount_minor:
        local_date = LocalTime.of(occurred_at, settings.utc_offset_minutes).date
        statement = pg_insert(route_daily_volume).values(
            route_id=outcome.route_id, local_date=local_date, volume_minor=outcome.amount_minor, payment_count=1
        )
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["route_id", "local_date"],
                set_={
                    "volume_minor": route_daily_volume.c.volume_minor + outcome.amount_minor,
                    "payment_count": route_daily_volume.c.payment_count + 1,
                },
            )
        )
    publish_transitions(tx, outcome.route_id, transitions)
    return transitions


async def _add_to_bucket(conn: AsyncConnection, outcome: AttemptOutcome, bucket_start: datetime) -> None:
    o = outcome.outcome
    values = {
        "attempts": 1,
        "succeeded": int(o is Outcome.SUCCEEDED),
        "declined": int(o is Outcome.DECLINED),
        "errors": int(o is Outcome.ERROR),
        "timeouts": int(o is Outcome.TIMEOUT),
        "latency_ms_sum": outcome.latency_ms or 0,
        "latency_samples": int(outcome.latency_ms is not None),
    }
    statement = pg_insert(route_health_buckets).values(route_id=outcome.route_id, bucket_start=bucket_start, **values)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["route_id", "bucket_start"],
            set_={name: route_health_buckets.c[name] + statement.excluded[name] for name in values},
        )
    )


async def sweep_open_circuits(tx: Tx, *, now: datetime, policy: HealthPolicy) -> int:
    """Record open → half_open for circuits whose cool-down has ended, and publish it. Any replica may run it."""
    due = now - timedelta(seconds=policy.open_seconds)
    rows = (
        (
            await tx.conn.execute(
                select(route_health)
                .where(and_(route_health.c.state == CircuitState.OPEN.value, route_health.c.changed_at <= due))
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
