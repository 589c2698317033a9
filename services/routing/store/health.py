"""Shared health state: attempt outcomes → success-rate buckets, daily volume and the circuit breaker.

Writers are the consumers of `cashier.payments` on any replica. Each outcome locks its route's
`route_health` row, applies the pure breaker function, and writes the result in the same transaction
as the inbox row, so concurrent consumers serialise per route and an event counts exactly once.
A consumed batch is one transaction: its first outcome of a route locks and reads the row, the others
reuse that copy, and each outcome's writes are one statement (docs/performance.md, routing).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
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


# One outcome counted in one statement: the attempt id claimed (none: always counted), and only if it is new,
# the breaker written, the success-rate bucket and the daily volume added to. `:bucket_start` / `:local_date`
# NULL skip their table (an outcome older than the window; not a succeeded amount). Returns whether it counted.
_COUNT_OUTCOME = text(
    """
WITH counted AS (
    INSERT INTO counted_attempts (attempt_id, route_id, counted_at)
    SELECT CAST(:attempt_id AS text), CAST(:route_id AS text), CAST(:now AS timestamptz)
    WHERE CAST(:attempt_id AS text) IS NOT NULL
    ON CONFLICT (attempt_id) DO NOTHING
    RETURNING attempt_id
), go AS (
    SELECT 1 AS one WHERE CAST(:attempt_id AS text) IS NULL OR EXISTS (SELECT 1 FROM counted)
), breaker AS (
    UPDATE route_health SET
        state = CAST(:state AS text), changed_at = CAST(:changed_at AS timestamptz),
        consecutive_failures = CAST(:consecutive_failures AS integer),
        half_open_successes = CAST(:half_open_successes AS integer),
        window_start = CAST(:window_start AS timestamptz), window_attempts = CAST(:window_attempts AS integer),
        window_failures = CAST(:window_failures AS integer), previous_attempts = CAST(:previous_attempts AS integer),
        previous_failures = CAST(:previous_failures AS integer), updated_at = CAST(:now AS timestamptz)
    WHERE route_id = CAST(:route_id AS text) AND EXISTS (SELECT 1 FROM go)
), bucket AS (
    INSERT INTO route_health_buckets AS b (route_id, bucket_start, attempts, succeeded, declined, errors, timeouts,
        latency_ms_sum, latency_samples)
    SELECT CAST(:route_id AS text), CAST(:bucket_start AS timestamptz), 1, CAST(:succeeded AS integer),
        CAST(:declined AS integer), CAST(:errors AS integer), CAST(:timeouts AS integer),
        CAST(:latency_ms AS bigint), CAST(:latency_samples AS integer)
    FROM go WHERE CAST(:bucket_start AS timestamptz) IS NOT NULL
    ON CONFLICT (route_id, bucket_start) DO UPDATE SET
        attempts = b.attempts + 1, succeeded = b.succeeded + EXCLUDED.succeeded,
        declined = b.declined + EXCLUDED.declined, errors = b.errors + EXCLUDED.errors,
        timeouts = b.timeouts + EXCLUDED.timeouts, latency_ms_sum = b.latency_ms_sum + EXCLUDED.latency_ms_sum,
        latency_samples = b.latency_samples + EXCLUDED.latency_samples
), volume AS (
    INSERT INTO route_daily_volume AS v (route_id, local_date, volume_minor, payment_count)
    SELECT CAST(:route_id AS text), CAST(:local_date AS date), CAST(:amount_minor AS bigint), 1
    FROM go WHERE CAST(:local_date AS date) IS NOT NULL
    ON CONFLICT (route_id, local_date) DO UPDATE SET
        volume_minor = v.volume_minor + EXCLUDED.volume_minor, payment_count = v.payment_count + 1
)
SELECT EXISTS (SELECT 1 FROM go)
"""
)


async def record_outcome(
    tx: Tx, outcome: AttemptOutcome, *, now: datetime, settings: RoutingSettings
) -> list[Transition]:
    """Count one attempt outcome everywhere it matters; returns the circuit transitions it caused.

    The route's breaker row is locked and read by the first outcome of the route in this transaction; then each
    outcome is one statement (`_COUNT_OUTCOME`) instead of six, and an attempt already counted changes nothing
    (its breaker result is dropped, as the statement writes nothing for it)."""
    held = _held_by(tx)
    breaker = held.breakers.get(outcome.route_id)
    if breaker is None:
        breaker = held.breakers[outcome.route_id] = await _lock_breaker(tx.conn, outcome.route_id)
    policy = settings.health
    breaker, transitions = on_outcome(breaker, outcome.outcome, now, policy)

    occurred_at = min(outcome.occurred_at, now)  # a sender's clock ahead of ours must not write the future
    in_window = occurred_at > now - timedelta(seconds=policy.success_window_seconds)
    volume = outcome.outcome is Outcome.SUCCEEDED and bool(outcome.amount_minor)
    o = outcome.outcome
    counted = await tx.conn.scalar(
        _COUNT_OUTCOME,
        {
            "attempt_id": outcome.attempt_id,
            "route_id": outcome.route_id,
            "now": now,
            **_breaker_values(breaker),
            "bucket_start": floor_time(occurred_at, policy.bucket_seconds) if in_window else None,
            "succeeded": int(o is Outcome.SUCCEEDED),
            "declined": int(o is Outcome.DECLINED),
            "errors": int(o is Outcome.ERROR),
            "timeouts": int(o is Outcome.TIMEOUT),
            "latency_ms": outcome.latency_ms or 0,
            "latency_samples": int(outcome.latency_ms is not None),
            "local_date": LocalTime.of(occurred_at, settings.utc_offset_minutes).date if volume else None,
            "amount_minor": outcome.amount_minor or 0,
        },
    )
    if not counted:
        return []
    held.breakers[outcome.route_id] = breaker
    publish_transitions(tx, outcome.route_id, transitions)
    return transitions


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
