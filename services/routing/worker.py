"""The routing worker: the consumer of attempt outcomes and the health sweep loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

from libs.common.inbox import Subscription
from libs.common.logging import get_logger
from libs.common.web import BackgroundTask, Runtime
from services.routing.config import Settings
from services.routing.events.consumers import on_payment_outcome
from services.routing.events.types import CASHIER_PAYMENTS_TOPIC, OUTCOME_EVENT_TYPES
from services.routing.store.config import get_settings
from services.routing.store.health import prune, sweep_open_circuits

log = get_logger("juhe.routing.worker")


def subscriptions(settings: Settings) -> list[Subscription]:
    return [Subscription(CASHIER_PAYMENTS_TOPIC, on_payment_outcome, OUTCOME_EVENT_TYPES)]


async def health_sweep(runtime: Runtime) -> None:
    """Record due open → half_open transitions (publishing them) and prune old windows, forever."""
    settings = runtime.settings
    assert isinstance(settings, Settings)
    last_prune = 0.0
    while True:
        with contextlib.suppress(Exception):
            await _sweep_once(
                runtime, prune_now=time.monotonic() - last_prune >= settings.health_prune_interval_seconds
            )
        if time.monotonic() - last_prune >= settings.health_prune_interval_seconds:
            last_prune = time.monotonic()
        await asyncio.sleep(settings.health_sweep_interval_seconds)


async def _sweep_once(runtime: Runtime, *, prune_now: bool) -> None:
    now = datetime.now(UTC)
    async with runtime.uow.begin() as tx:
        policy = (await get_settings(tx.conn)).settings.health
        swept = await sweep_open_circuits(tx, now=now, policy=policy)
        if prune_now:
            await prune(tx.conn, now=now, policy=policy)
    if swept:
        log.info("circuits half-opened", count=swept)


def background_tasks(settings: Settings) -> list[BackgroundTask]:
    return [health_sweep]
