"""The gateway worker: which events it consumes and which loops it runs besides the outbox relay."""

from __future__ import annotations

from gateway.config import Settings
from gateway.context import gateway_context
from gateway.store import guards
from libs.common.inbox import Subscription
from libs.common.logging import get_logger
from libs.common.web import BackgroundTask, Runtime, run_rounds

log = get_logger("juhe.gateway.worker")


def subscriptions(settings: Settings) -> list[Subscription]:
    return []


def background_tasks(settings: Settings) -> list[BackgroundTask]:
    return [prune_guards, drive_onboardings]


async def prune_once(runtime: Runtime, *, batch_max: int) -> int:
    """Delete expired nonces, idempotency records, rate windows and user tokens; rows deleted."""
    deleted = 0
    engine = guards.guard_engine(runtime.engine)
    for table in guards.GUARDED_TABLES:
        while True:
            async with engine.connect() as conn:
                count = await guards.prune_expired(conn, table=table, batch_max=batch_max)
            deleted += count
            if count < batch_max:
                break
    return deleted


async def prune_guards(runtime: Runtime) -> None:
    settings = gateway_context(runtime).settings

    async def prune_round() -> int:
        deleted = await prune_once(runtime, batch_max=settings.prune_batch_max)
        if deleted:
            log.info("pruned expired guard rows", deleted=deleted)
        return deleted

    await run_rounds("guard prune", prune_round, interval_seconds=settings.prune_interval_seconds)


async def drive_onboardings(runtime: Runtime) -> None:
    """Finish what the creating requests left: steps whose service was down, KYC checks held for review,
    onboardings whose gateway died mid-way (their lease ran out). gateway/flows/onboarding.py."""
    context = gateway_context(runtime)
    settings = context.settings
    await run_rounds(
        "onboarding",
        context.onboarding.drive_due,
        interval_seconds=settings.onboarding_interval_seconds,
        batch_max=settings.onboarding_batch_max,
    )
