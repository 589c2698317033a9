"""The marketing worker's loops besides the outbox relay and the inbox consumer (what it consumes:
events/consumers.py)."""

from __future__ import annotations

from datetime import timedelta

from libs.common.web import BackgroundTask, Runtime, run_rounds
from services.marketing.config import Settings
from services.marketing.context import marketing_context
from services.marketing.flows import channel_coupons, claims, points, redemptions, topups
from services.marketing.store import coupons as store


async def expire_locks_round(runtime: Runtime) -> int:
    """Release locks past their `locked_until` (a payment that never confirmed nor released), each in its
    one transaction; SKIP LOCKED lets replicas share the sweep. Returns how many were expired."""
    context = marketing_context(runtime)
    now = context.clock()
    async with runtime.uow.begin() as tx:
        due = await store.expired_locks(tx.conn, now, context.settings.lock_sweep_batch_max)
        for redemption_id in due:
            await redemptions.expire_lock(tx, redemption_id, now)
    return len(due)


async def expire_points_round(runtime: Runtime) -> int:
    """Expire the points left in lots past their expiry (flows/points.py); replicas share it (SKIP LOCKED)."""
    context = marketing_context(runtime)
    async with runtime.uow.begin() as tx:
        return await points.expire_round(tx, now=context.clock(), batch_max=context.settings.points_expiry_batch_max)


async def expire_topup_bonuses_round(runtime: Runtime) -> int:
    """Expire granted top-up bonuses past their time (flows/topups.py); replicas share it (SKIP LOCKED)."""
    context = marketing_context(runtime)
    async with runtime.uow.begin() as tx:
        return await topups.expire_round(tx, now=context.clock(), batch_max=context.settings.topup_expiry_batch_max)


def background_tasks(settings: Settings) -> list[BackgroundTask]:
    async def expire_locks(runtime: Runtime) -> None:
        await run_rounds(
            "expire_locks",
            lambda: expire_locks_round(runtime),
            interval_seconds=settings.lock_sweep_interval_seconds,
            batch_max=settings.lock_sweep_batch_max,
        )

    async def bulk_issue(runtime: Runtime) -> None:
        async def round_once() -> int:
            return await claims.bulk_issue_round(
                runtime.uow,
                batch_max=settings.bulk_issue_batch_max,
                day_timezone=settings.day_timezone,
                now=marketing_context(runtime).clock,
            )

        await run_rounds(
            "bulk_issue",
            round_once,
            interval_seconds=settings.bulk_issue_interval_seconds,
            batch_max=settings.bulk_issue_batch_max,
        )

    async def expire_points(runtime: Runtime) -> None:
        await run_rounds(
            "expire_points",
            lambda: expire_points_round(runtime),
            interval_seconds=settings.points_expiry_interval_seconds,
            batch_max=settings.points_expiry_batch_max,
        )

    async def expire_topup_bonuses(runtime: Runtime) -> None:
        await run_rounds(
            "expire_topup_bonuses",
            lambda: expire_topup_bonuses_round(runtime),
            interval_seconds=settings.topup_expiry_interval_seconds,
            batch_max=settings.topup_expiry_batch_max,
        )

    async def send_channel_coupons(runtime: Runtime) -> None:
        """Channel coupons whose send got no answer (outage, crash) are sent again, same out_request_no."""

        async def round_once() -> int:
            context = marketing_context(runtime)
            older_than = context.clock() - timedelta(seconds=settings.channel_send_interval_seconds)
            return await channel_coupons.send_round(
                runtime.uow, context.cashier, batch_max=settings.channel_send_batch_max, older_than=older_than
            )

        await run_rounds(
            "send_channel_coupons",
            round_once,
            interval_seconds=settings.channel_send_interval_seconds,
            batch_max=settings.channel_send_batch_max,
        )

    return [expire_locks, bulk_issue, expire_points, expire_topup_bonuses, send_channel_coupons]
