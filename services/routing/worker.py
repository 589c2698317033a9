"""The routing worker: the consumer of attempt outcomes and the health sweep loop."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from libs.common.inbox import Subscription
from libs.common.logging import get_logger
from libs.common.tasks import raise_if_cancelled
from libs.common.web import BackgroundTask, Runtime, run_rounds
from services.routing.config import Settings
from services.routing.context import routing_context
from services.routing.events.consumers import on_payment_outcome
from services.routing.events.types import CASHIER_PAYMENTS_TOPIC, OUTCOME_EVENT_TYPES
from services.routing.store.health import any_open_circuit_due, prune, sweep_open_circuits
from services.routing.store.settings import get_settings
from services.routing.store.special_rates import prune_payment_fees

log = get_logger("juhe.routing.worker")


def subscriptions(settings: Settings) -> list[Subscription]:
    return [Subscription(CASHIER_PAYMENTS_TOPIC, on_payment_outcome, OUTCOME_EVENT_TYPES)]


async def health_sweep(runtime: Runtime) -> None:
    """Record due open → half_open transitions (publishing them) and prune old windows, forever. A failed
    round (database down, a bad row) is logged with its exception by `run_rounds` and retried next interval."""
    settings = routing_context(runtime).settings
    last_prune = -settings.health_prune_interval_seconds  # the first round prunes

    async def sweep_round() -> int:
        nonlocal last_prune
        raise_if_cancelled()  # a shutdown's cancel that a driver swallowed in the last round ends the loop here
        prune_now = time.monotonic() - last_prune >= settings.health_prune_interval_seconds
        swept = await _sweep_once(runtime, prune_now=prune_now)
        if prune_now:
            last_prune = time.monotonic()
        return swept  # 0: nothing was due, so `run_rounds` spaces the next rounds out (up to 4 s)

    await run_rounds("routing health sweep", sweep_round, interval_seconds=settings.health_sweep_interval_seconds)


async def _sweep_once(runtime: Runtime, *, prune_now: bool) -> int:
    """One round: the circuits due to half-open recorded, and old windows pruned when `prune_now`; the number of
    circuits half-opened. A round with nothing due and no pruning is one autocommit read, not a transaction."""
    now = datetime.now(UTC)
    async with runtime.uow.read() as conn:
        policy = (await get_settings(conn)).settings.health
        due = await any_open_circuit_due(conn, now=now, policy=policy)
    if not due and not prune_now:
        return 0
    async with runtime.uow.begin() as tx:
        swept = await sweep_open_circuits(tx, now=now, policy=policy) if due else 0
        if prune_now:
            await prune(tx.conn, now=now, policy=policy)
            await prune_payment_fees(tx.conn, now=now)
    if swept:
        log.info("circuits half-opened", count=swept)
    return swept


def background_tasks(settings: Settings) -> list[BackgroundTask]:
    return [health_sweep]
