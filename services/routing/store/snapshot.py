"""Building the Snapshot a decision reads, in one database round trip per decision.

The slow-changing part (routes, fee rates, rules, settings) is cached per process under the
`config_version` it was read at. Every decision reads, in a single statement, the current
`config_version` and `health_version` (bumped by every transaction that changes the health tables, migration
0005) and, only when either moved since the snapshot this process holds for the merchant (or the success window
or the local day moved on), the fast-changing part: the merchant's contracts, every route's breaker, the
success-rate window sums and today's volume. If the config version moved, the cache is reloaded first.
So every replica decides from the same committed state: a reused snapshot is the state as of versions that
are still current in the same statement's snapshot, and a disabled route or contract, or a breaker that opened,
is seen by the very next decision anywhere (docs/performance.md, "Seventh pass: database").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.common.db import driver_connection
from services.routing.domain.codec import settings_from_dict
from services.routing.domain.decide import RouteHealth, RoutingSettings, Snapshot
from services.routing.domain.fees import FeeRate
from services.routing.domain.health import Breaker, CircuitState, OutcomeCounts, floor_time
from services.routing.domain.model import Contract, LocalTime, Route
from services.routing.domain.rules import Rule
from services.routing.store.channel_routes import route_from_row
from services.routing.store.fee_rates import fee_rate_from_row
from services.routing.store.rules import rule_from_row
from services.routing.store.tables import channel_routes, fee_rates, routing_config, routing_rules

# Positional parameters ($1 merchant, $2 oldest bucket, $3 now, $4 local date, $5 and $6 the config and health
# versions of the snapshot held; -1 when none): run on the asyncpg connection itself (`SnapshotSource._dynamic`), as
# one prepared statement of asyncpg's cache. The four reads are uncorrelated subqueries (init plans), which
# PostgreSQL runs only when their CASE branch is taken: with both versions unchanged the statement reads two rows
# (`cur` is materialized so that its two lookups run once, not once per reference).
_DYNAMIC = """
    WITH cur AS MATERIALIZED (
      SELECT (SELECT config_version FROM routing_config WHERE id = 1) AS config_version,
             (SELECT health_version FROM route_health_version WHERE id = 1) AS health_version
    )
    SELECT
      cur.config_version, cur.health_version,
      CASE WHEN cur.config_version = $5 AND cur.health_version = $6 THEN NULL ELSE (
        SELECT coalesce(jsonb_agg(to_jsonb(c)), '[]'::jsonb) FROM merchant_contracts c WHERE c.merchant_id = $1
      ) END AS contracts,
      CASE WHEN cur.config_version = $5 AND cur.health_version = $6 THEN NULL ELSE (
        SELECT coalesce(jsonb_agg(to_jsonb(h)), '[]'::jsonb) FROM route_health h
      ) END AS health,
      CASE WHEN cur.config_version = $5 AND cur.health_version = $6 THEN NULL ELSE (
        SELECT coalesce(jsonb_agg(to_jsonb(b)), '[]'::jsonb) FROM (
          SELECT route_id, sum(attempts) AS attempts, sum(succeeded) AS succeeded, sum(declined) AS declined,
                 sum(errors) AS errors, sum(timeouts) AS timeouts, sum(latency_ms_sum) AS latency_ms_sum,
                 sum(latency_samples) AS latency_samples
            FROM route_health_buckets
           WHERE bucket_start > $2 AND bucket_start <= $3
           GROUP BY route_id) b
      ) END AS recent,
      CASE WHEN cur.config_version = $5 AND cur.health_version = $6 THEN NULL ELSE (
        SELECT coalesce(jsonb_agg(to_jsonb(v)), '[]'::jsonb) FROM route_daily_volume v WHERE v.local_date = $4
      ) END AS volume
    FROM cur
    """
# Merchants whose last snapshot a process keeps (the cache is cleared when full).
SNAPSHOT_CACHE_ENTRIES_MAX = 4_096
_NONE_HELD = (-1, -1)


@dataclass(frozen=True, slots=True)
class StaticConfig:
    config_version: int
    routes: dict[str, Route]
    rates: dict[str, tuple[FeeRate, ...]]
    rules: tuple[Rule, ...]
    settings: RoutingSettings


async def load_static_config(conn: AsyncConnection) -> StaticConfig:
    """Call inside one REPEATABLE READ transaction so the parts and the version agree."""
    config = (await conn.execute(select(routing_config))).mappings().one()
    routes = {
        r.route_id: r for r in (route_from_row(row) for row in (await conn.execute(select(channel_routes))).mappings())
    }
    rates: dict[str, list[FeeRate]] = {}
    for row in (await conn.execute(select(fee_rates))).mappings():
        rates.setdefault(row["route_id"], []).append(fee_rate_from_row(row))
    rules = tuple(rule_from_row(row) for row in (await conn.execute(select(routing_rules))).mappings())
    return StaticConfig(
        config_version=int(config["config_version"]),
        routes=routes,
        rates={k: tuple(sorted(v, key=lambda r: r.rate_id)) for k, v in rates.items()},
        rules=tuple(sorted(rules, key=lambda r: r.rule_id)),
        settings=settings_from_dict(config["settings"]),
    )


def _ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _breaker(raw: dict[str, Any]) -> Breaker:
    return Breaker(
        state=CircuitState(raw["state"]),
        changed_at=_ts(raw["changed_at"]),
        consecutive_failures=raw["consecutive_failures"],
        half_open_successes=raw["half_open_successes"],
        window_start=_ts(raw["window_start"]),
        window_attempts=raw["window_attempts"],
        window_failures=raw["window_failures"],
        previous_attempts=raw["previous_attempts"],
        previous_failures=raw["previous_failures"],
    )


def _counts(raw: dict[str, Any]) -> OutcomeCounts:
    return OutcomeCounts(
        attempts=int(raw["attempts"]),
        succeeded=int(raw["succeeded"]),
        declined=int(raw["declined"]),
        errors=int(raw["errors"]),
        timeouts=int(raw["timeouts"]),
        latency_ms_sum=int(raw["latency_ms_sum"]),
        latency_samples=int(raw["latency_samples"]),
    )


@dataclass(frozen=True, slots=True)
class _Window:
    """The parameters of the time-dependent reads, and what decides their result. Buckets start on whole seconds
    (`floor_time`), so the buckets in the success window, those with `oldest < bucket_start <= now`, are the same
    for every `now` within one second (whatever the bucket size, also across a change of it), and the volume is
    the local day's: the held snapshot is reused only under the same key."""

    oldest: datetime
    now: datetime
    today: date
    key: tuple[datetime, datetime, date]

    @classmethod
    def of(cls, now: datetime, settings: RoutingSettings) -> _Window:
        oldest = now - timedelta(seconds=settings.health.success_window_seconds)
        today = LocalTime.of(now, settings.utc_offset_minutes).date
        return cls(oldest, now, today, (floor_time(oldest, 1), floor_time(now, 1), today))


@dataclass(frozen=True, slots=True)
class _Held:
    """A merchant's last snapshot, valid while the versions and the window's key it was read at are current."""

    versions: tuple[int, int]
    window_key: tuple[datetime, datetime, date]
    snapshot: Snapshot


class SnapshotSource:
    """Per-process cache of the static configuration and of each merchant's last snapshot, checked against the
    database's versions by every decision (one statement, which reads the rest only when they moved)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._static: StaticConfig | None = None
        self._reload_lock = asyncio.Lock()
        self._held: dict[str, _Held] = {}

    async def _static_config(self, version_seen: int | None) -> StaticConfig:
        cached = self._static
        if cached is not None and cached.config_version == version_seen:
            return cached
        async with self._reload_lock:
            cached = self._static
            if cached is not None and version_seen is not None and cached.config_version >= version_seen:
                return cached
            async with self.engine.connect() as conn:
                await conn.execution_options(isolation_level="REPEATABLE READ")
                async with conn.begin():
                    self._static = await load_static_config(conn)
            return self._static

    async def snapshot(self, merchant_id: str, now: datetime) -> Snapshot:
        static = self._static or await self._static_config(None)
        for _ in range(2):
            window = _Window.of(now, static.settings)
            held = self._held.get(merchant_id)
            if held is None or held.window_key != window.key or held.versions[0] != static.config_version:
                held = None
            dynamic = await self._dynamic(merchant_id, window, held.versions if held is not None else _NONE_HELD)
            if dynamic["config_version"] == static.config_version:
                break
            static = await self._static_config(int(dynamic["config_version"]))
        if held is not None and dynamic["contracts"] is None:  # both versions unchanged: the state held is current
            return held.snapshot
        snapshot = _snapshot(static, dynamic)
        if dynamic["config_version"] == static.config_version:
            if len(self._held) >= SNAPSHOT_CACHE_ENTRIES_MAX:
                self._held.clear()
            versions = (int(dynamic["config_version"]), int(dynamic["health_version"]))
            self._held[merchant_id] = _Held(versions, window.key, snapshot)
        return snapshot

    async def _dynamic(self, merchant_id: str, window: _Window, held: tuple[int, int]) -> Any:
        # One statement, one snapshot, one round trip in autocommit: on the pooled connection's asyncpg connection
        # itself (libs.common.db.driver_connection), which begins nothing (SQLAlchemy's adapter would: BEGIN, the
        # SELECT, and the ROLLBACK of closing), and without SQLAlchemy's per-statement work (its cursor, compiled
        # cache and result wrapping: ~0.1 ms of CPU per decision; docs/performance.md, "Sixth pass: the edges").
        # The jsonb columns come back decoded: the dialect set the connection's jsonb codec.
        async with driver_connection(self.engine) as driver:
            return await driver.fetchrow(
                _DYNAMIC, merchant_id, window.oldest, window.now, window.today, held[0], held[1]
            )


def _snapshot(static: StaticConfig, dynamic: Any) -> Snapshot:
    contracts = {(c["merchant_id"], c["route_id"]): _contract(c) for c in dynamic["contracts"]}
    recent = {r["route_id"]: _counts(r) for r in dynamic["recent"]}
    breakers = {h["route_id"]: _breaker(h) for h in dynamic["health"]}
    health = {
        route_id: RouteHealth(breaker=breakers.get(route_id, Breaker()), recent=recent.get(route_id, OutcomeCounts()))
        for route_id in set(recent) | set(breakers)
    }
    return Snapshot(
        routes=static.routes,
        rates=static.rates,
        contracts=contracts,
        rules=static.rules,
        health=health,
        volume_today_minor={v["route_id"]: int(v["volume_minor"]) for v in dynamic["volume"]},
        settings=static.settings,
        config_version=static.config_version,
    )


def _contract(raw: dict[str, Any]) -> Contract:
    return Contract(
        merchant_id=raw["merchant_id"],
        route_id=raw["route_id"],
        sub_merchant_id=raw["sub_merchant_id"],
        enabled=raw["enabled"],
        industry=raw["industry"],
        version=raw["version"],
    )
