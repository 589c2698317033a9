"""The marketing worker: which events it consumes and which loops it runs besides the outbox relay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from libs.common.db import Tx
from libs.common.events import Envelope
from libs.common.inbox import Subscription
from libs.common.web import BackgroundTask, Runtime, run_rounds
from services.marketing.config import Settings
from services.marketing.context import marketing_context
from services.marketing.events import CASHIER_PAYMENTS_TOPIC, CASHIER_REFUNDS_TOPIC
from services.marketing.flows import channel_coupons, claims, payment_outcomes, points, redemptions, topups
from services.marketing.store import coupons as store


def subscriptions(settings: Settings) -> list[Subscription]:
    """Coupons redeemed online: confirm on `payment.succeeded`, release on `payment.failed|closed`, the refund
    rule on `refund.succeeded` (flows/payment_outcomes.py). Points: earn on `payment.succeeded`, take back on
    `refund.succeeded` (flows/points.py). Top-up promotions: a bonus on a paid `wallet_topup`, revoked on its
    refund (flows/topups.py). One subscription per topic, every effect in its transaction."""

    async def on_payment(tx: Tx, event: Envelope) -> None:
        await payment_outcomes.on_payment_event(tx, event)
        await points.on_payment_event(tx, event, day_timezone=settings.day_timezone)
        await topups.on_payment_event(tx, event, topup_merchant_id=settings.wallet_topup_merchant_id)

    async def on_refund(tx: Tx, event: Envelope) -> None:
        await payment_outcomes.on_refund_event(tx, event)
        await points.on_refund_event(tx, event)  # stores the refund fact top-ups read too: keep it first
        await topups.on_refund_event(tx, event, now=datetime.now(UTC))

    return [
        Subscription(
            CASHIER_PAYMENTS_TOPIC, on_payment, frozenset({"payment.succeeded", "payment.failed", "payment.closed"})
        ),
        Subscription(CASHIER_REFUNDS_TOPIC, on_refund, frozenset({"refund.succeeded"})),
    ]


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
        await run_rounds("expire_locks", lambda: expire_locks_round(runtime),
                         interval_seconds=settings.lock_sweep_interval_seconds,
                         batch_max=settings.lock_sweep_batch_max)  # fmt: skip

    async def bulk_issue(runtime: Runtime) -> None:
        async def round_once() -> int:
            return await claims.bulk_issue_round(
                runtime.uow, batch_max=settings.bulk_issue_batch_max, day_timezone=settings.day_timezone,
                now=marketing_context(runtime).clock,
            )  # fmt: skip

        await run_rounds("bulk_issue", round_once, interval_seconds=settings.bulk_issue_interval_seconds,
                         batch_max=settings.bulk_issue_batch_max)  # fmt: skip

    async def expire_points(runtime: Runtime) -> None:
        await run_rounds("expire_points", lambda: expire_points_round(runtime),
                         interval_seconds=settings.points_expiry_interval_seconds,
                         batch_max=settings.points_expiry_batch_max)  # fmt: skip

    async def expire_topup_bonuses(runtime: Runtime) -> None:
        await run_rounds("expire_topup_bonuses", lambda: expire_topup_bonuses_round(runtime),
                         interval_seconds=settings.topup_expiry_interval_seconds,
                         batch_max=settings.topup_expiry_batch_max)  # fmt: skip

    async def send_channel_coupons(runtime: Runtime) -> None:
        """Channel coupons whose send got no answer (outage, crash) are sent again, same out_request_no."""

        async def round_once() -> int:
            context = marketing_context(runtime)
            older_than = context.clock() - timedelta(seconds=settings.channel_send_interval_seconds)
            return await channel_coupons.send_round(runtime.uow, context.cashier,
                                                    batch_max=settings.channel_send_batch_max,
                                                    older_than=older_than)  # fmt: skip

        await run_rounds("send_channel_coupons", round_once, interval_seconds=settings.channel_send_interval_seconds,
                         batch_max=settings.channel_send_batch_max)  # fmt: skip

    return [expire_locks, bulk_issue, expire_points, expire_topup_bonuses, send_channel_coupons]
