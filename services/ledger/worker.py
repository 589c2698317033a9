"""The ledger worker: which events it consumes and which loops it runs besides the outbox relay.

Consumed: `cashier.payments` (`payment.succeeded`) and `cashier.refunds` (`refund.succeeded`), posted per
docs/ledger.md §3.1/§3.3 by `events.consumers.CashierPostings`, and marketing's instructions. Their handlers need
the process's batching writer, which exists only once the app has started, so they are a consumer group of their
own (`consumer_groups`: `juhe-ledger-cashier`, its offsets and inbox rows as before) whose subscriptions the shared
worker helpers build from the runtime (`libs.common.web.ConsumerGroup`). A `wallet_topup` payment of the
collecting merchant is credited to the wallet (§3.7) instead.

Loops: expiry of pending transfers; the wallet reconciler (pending wallet operations whose hold finished
behind their back get their status and their `ledger.wallet` event, once).
"""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime

from sqlalchemy import text

from libs.common.inbox import Subscription
from libs.common.logging import get_logger
from libs.common.tasks import raise_if_cancelled
from libs.common.web import BackgroundTask, ConsumerGroup, Runtime, run_rounds
from services.ledger.config import Settings
from services.ledger.context import ledger_context
from services.ledger.domain.engine import VoidPending
from services.ledger.events.consumers import CashierPostings
from services.ledger.events.coupons import InStoreCouponPostings
from services.ledger.store.writer import LedgerWriter
from services.ledger.wallet.clients import cashier as cashier_client
from services.ledger.wallet.events.cashier import CashierTopUps
from services.ledger.wallet.events.points import PointsPostings
from services.ledger.wallet.events.topups import TopupBonusPostings
from services.ledger.wallet.flows import wallet as wallet_flows
from services.ledger.wallet.store import bonus as bonus_lots
from services.ledger.wallet.store import topup as wallet_topup
from services.ledger.wallet.store import wallet as wallet_store

log = get_logger("juhe.ledger.worker")


def subscriptions(settings: Settings) -> list[Subscription]:
    return []


def background_tasks(settings: Settings) -> list[BackgroundTask]:
    return [expire_pending_transfers, reconcile_wallet_operations]


def consumer_groups(settings: Settings) -> list[ConsumerGroup]:
    return [ConsumerGroup("cashier", cashier_subscriptions)]


def cashier_subscriptions(runtime: Runtime) -> list[Subscription]:
    """`payment.succeeded` and `refund.succeeded` from the cashier, marketing's points instructions (`marketing.points`,
    wallet/events/points.py), its top-up bonuses (`marketing.topups`, wallet/events/topups.py) and its in-store coupon
    redemptions (`marketing.coupons`, events/coupons.py), posted through this process's writer."""
    context = ledger_context(runtime)
    writer = context.writer
    cashier = CashierPostings(
        runtime.uow,
        writer,
        topup_merchant_id=context.settings.wallet_topup_merchant_id,
        top_ups=CashierTopUps(runtime.uow, writer),
    )
    return [
        *cashier.subscriptions(),
        *PointsPostings(runtime.uow, writer).subscriptions(),
        *TopupBonusPostings(runtime.uow, writer).subscriptions(),
        *InStoreCouponPostings(cashier).subscriptions(),
    ]


async def expire_due(runtime: Runtime, writer: LedgerWriter, batch_max: int) -> int:
    """Expires pending transfers whose timeout passed; returns how many were due.

    Goes through the same write path as everything else (locks, batching, events), so an expiry racing a
    post of the same hold is decided by the row lock: exactly one of them wins.
    """
    raise_if_cancelled()  # a shutdown's cancel that a driver swallowed in the last round ends the loop here
    async with runtime.uow.read() as conn:
        due = (
            (
                await conn.execute(
                    text(
                        "SELECT id FROM transfers WHERE status = 'pending' AND timeout_at <= clock_timestamp()"
                        " ORDER BY timeout_at LIMIT :n"
                    ),
                    {"n": batch_max},
                )
            )
            .scalars()
            .all()
        )
    if due:
        await asyncio.gather(*(writer.submit(VoidPending(transfer_id, expired=True)) for transfer_id in due))
        log.info("pending transfers expired", count=len(due))
    return len(due)


async def expire_pending_transfers(runtime: Runtime) -> None:
    context = ledger_context(runtime)
    settings = context.settings
    batch_max = settings.expiry_batch_max
    await run_rounds(
        "pending transfer expiry",
        functools.partial(expire_due, runtime, context.writer, batch_max),
        interval_seconds=settings.expiry_interval_seconds,
        batch_max=batch_max,
    )


async def reconcile_wallet_round(runtime: Runtime, batch_max: int) -> int:
    """One round: pending wallet operations whose hold finished (expired, or posted/voided by a call that
    crashed before recording it) get their status and their `ledger.wallet` event, each exactly once (the
    status compare-and-set decides); withdrawal holds whose operation was never recorded get it (and
    `withdrawal.requested`), once (the insert on the business key decides); bonus lots that ended are finished
    (wallet/store/bonus.py); top-up refund holds the cashier never recorded are voided (wallet/store/topup.py).
    Returns how many were found."""
    raise_if_cancelled()  # a shutdown's cancel that a driver swallowed in the last round ends the loop here
    context = ledger_context(runtime)
    settings, writer = context.settings, context.writer
    async with runtime.uow.read() as conn:
        ids = await wallet_store.unsynced_operations(conn, batch_max)
    for operation_id in ids:
        await wallet_store.sync_operation(runtime.uow, operation_id)
    adopted = await wallet_flows.adopt_orphan_withdrawals(
        runtime.uow, older_than_seconds=settings.wallet_orphan_after_seconds, limit=batch_max
    )
    lots = await bonus_lots.finish_ended_lots(runtime.uow, writer, limit=batch_max, now=datetime.now(UTC))
    orphans = await wallet_topup.resolve_orphan_refund_holds(
        runtime.uow,
        writer,
        functools.partial(cashier_client.refund_known, settings),
        older_than_seconds=settings.top_up_refund_orphan_after_seconds,
        limit=batch_max,
    )
    if ids or adopted:
        log.info("wallet operations reconciled", synced=len(ids), adopted=adopted)
    return max(len(ids), adopted, lots, orphans)


async def reconcile_wallet_operations(runtime: Runtime) -> None:
    settings = ledger_context(runtime).settings
    batch_max = settings.wallet_reconcile_batch_max
    await run_rounds(
        "wallet reconcile",
        functools.partial(reconcile_wallet_round, runtime, batch_max),
        interval_seconds=settings.wallet_reconcile_interval_seconds,
        batch_max=batch_max,
    )
