"""The cashier worker: which events it consumes and which loops it runs besides the outbox relay.

Loops (each safe to run on several replicas: rows are claimed with SKIP LOCKED leases, and every
state change is a compare-and-set):
  * status poll of processing attempts and pending refunds, with bounded backoff, and the re-drive of
    attempts left `created` past their lease (the process or database died mid-create);
  * expiry: close payments past expire_at at the channel, then locally;
  * merchant webhook delivery from the webhook_deliveries table, woken by a pending delivery (the table's trigger,
    migration 0024, libs/common/wakeups.py): idle, it sleeps up to 30 s instead of polling every 2 s;
  * retention of the merchant event log (`GET /v1/events`): events older than `events_retention_days` are
    deleted in batches of `events_purge_batch_max`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from libs.common.inbox import Subscription
from libs.common.logging import get_logger
from libs.common.web import BackgroundTask, Runtime, run_rounds, work_waiter
from services.cashier.config import Settings
from services.cashier.context import cashier_context
from services.cashier.flows.checkout import settle_due
from services.cashier.flows.context import Cashier
from services.cashier.flows.payments import expire_due, poll_due, redrive_due
from services.cashier.flows.refunds import poll_refunds_due
from services.cashier.flows.webhook_endpoints import purge_expired_events
from services.cashier.flows.webhooks import deliver_due

log = get_logger("juhe.cashier.worker")


def subscriptions(settings: Settings) -> list[Subscription]:
    return []


def _cashier(runtime: Runtime) -> Cashier:
    return cashier_context(runtime).cashier


def _loop(
    step: Callable[[Cashier], Awaitable[int]],
    interval: Callable[[Settings], float],
    batch_max: Callable[[Settings], int],
    wake: str | None = None,
) -> BackgroundTask:
    """A loop of `step`; with `wake`, woken by that work queue's trigger (libs/common/wakeups.py)."""

    async def run(runtime: Runtime) -> None:
        cashier = _cashier(runtime)
        settings = cashier.settings
        await run_rounds(
            step.__name__,
            functools.partial(step, cashier),
            interval_seconds=interval(settings),
            batch_max=batch_max(settings),
            wake=work_waiter(runtime, wake),
        )

    run.__name__ = f"run_{step.__name__}"
    return run


async def _poll_all(cashier: Cashier) -> int:
    return max(await poll_due(cashier), await poll_refunds_due(cashier), await redrive_due(cashier))


async def run_settle_loop(runtime: Runtime) -> None:
    """The worker loop of checkout sessions' `settle_due` (every `expiry_interval_seconds`, as the payments'
    expiry loop)."""
    cashier = _cashier(runtime)
    await run_rounds(
        "settle_checkout_sessions",
        functools.partial(settle_due, cashier),
        interval_seconds=cashier.settings.expiry_interval_seconds,
        batch_max=cashier.settings.expiry_batch_max,
    )


def background_tasks(settings: Settings) -> list[BackgroundTask]:
    return [
        _loop(_poll_all, lambda s: s.poll_interval_seconds, lambda s: s.poll_batch_max),
        _loop(expire_due, lambda s: s.expiry_interval_seconds, lambda s: s.expiry_batch_max),
        # Woken by a pending delivery (migration 0024): idle, it sleeps up to 30 s instead of polling every 2 s.
        _loop(deliver_due, lambda s: s.webhook_interval_seconds, lambda s: s.webhook_batch_max, "webhook_deliveries"),
        _loop(purge_expired_events, lambda s: s.events_purge_interval_seconds, lambda s: s.events_purge_batch_max),
    ]
