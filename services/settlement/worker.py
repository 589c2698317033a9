"""The settlement worker: which events it consumes and which loops it runs besides the outbox relay."""

from __future__ import annotations

from libs.common.inbox import Subscription
from libs.common.web import BackgroundTask, WorkerLoop, loop_tasks
from services.settlement.config import Settings
from services.settlement.context import SettlementContext, settlement_context
from services.settlement.events import (
    ACCOUNT_OPENED,
    CASHIER_PAYMENTS_TOPIC,
    CASHIER_REFUNDS_TOPIC,
    COUPON_EVENTS,
    COUPONS_TOPIC,
    LEDGER_ACCOUNTS_TOPIC,
    LEDGER_WALLET_TOPIC,
    PAYMENT_EVENTS,
    REFUND_EVENTS,
    WITHDRAWAL_REQUESTED,
)
from services.settlement.events.consumers import (
    on_account_opened,
    on_coupon_event,
    on_payment_event,
    on_refund_event,
    on_wallet_event,
)
from services.settlement.flows.consistency import run_check
from services.settlement.flows.escrow import auto_confirm_due
from services.settlement.flows.payments import apply_parked_refunds
from services.settlement.flows.settle import run_cycle, today
from services.settlement.flows.splits import post_due_splits

# The worker's polling loops: each round runs on the typed context (context.py); the interval (and, where a
# full batch means more is waiting, the batch size) comes from the settings. A round returns how much it did,
# so an idle loop backs off (libs.common.web.run_rounds). A loop with `wake` is woken by its table's trigger
# (migration 0014, libs/common/wakeups.py) when a row becomes due, so while idle it sleeps up to 30 s.
LOOPS: tuple[WorkerLoop[SettlementContext], ...] = (
    WorkerLoop(
        "splits",
        lambda c: post_due_splits(c.uow, c.ledger, c.settings),
        lambda c: c.settings.split_interval_seconds,
        wake="split_executions",
    ),
    WorkerLoop(
        "escrow auto-confirm",
        lambda c: auto_confirm_due(c.uow, c.ledger, c.settings),
        lambda c: c.settings.split_interval_seconds,
    ),
    WorkerLoop(  # today's China-time cycle; cheap when nothing is due
        "settlement cycle",
        lambda c: run_cycle(c.uow, c.ledger, c.settings, today()),
        lambda c: c.settings.settlement_interval_seconds,
    ),
    WorkerLoop("payouts", lambda c: c.payouts.round(), lambda c: c.settings.payout_interval_seconds, wake="payouts"),
    WorkerLoop(
        "withdrawals", lambda c: c.withdrawals.round(), lambda c: c.settings.payout_interval_seconds, wake="withdrawals"
    ),
    WorkerLoop(
        "profit sharing",
        lambda c: c.profit_sharing.round(),
        lambda c: c.settings.profit_sharing_interval_seconds,
        wake="profit_sharing_orders",
    ),
    WorkerLoop(  # docs/consistency.md
        "settlement-ledger consistency",
        lambda c: run_check(c.uow, c.ledger, c.settings),
        lambda c: c.settings.consistency_interval_seconds,
    ),
    WorkerLoop(  # one indexed query when idle; none in normal operation
        "parked refunds",
        lambda c: apply_parked_refunds(c.uow, c.settings.split_batch_max),
        lambda c: c.settings.split_interval_seconds,
        batch_max=lambda c: c.settings.split_batch_max,
    ),
)


def subscriptions(settings: Settings) -> list[Subscription]:
    return [
        Subscription(LEDGER_ACCOUNTS_TOPIC, on_account_opened, frozenset({ACCOUNT_OPENED})),
        Subscription(CASHIER_PAYMENTS_TOPIC, on_payment_event, PAYMENT_EVENTS),
        Subscription(CASHIER_REFUNDS_TOPIC, on_refund_event, REFUND_EVENTS),
        Subscription(LEDGER_WALLET_TOPIC, on_wallet_event, frozenset({WITHDRAWAL_REQUESTED})),
        Subscription(COUPONS_TOPIC, on_coupon_event, COUPON_EVENTS),  # in-store redemptions' subsidy
    ]


def background_tasks(settings: Settings) -> list[BackgroundTask]:
    return loop_tasks(settlement_context, LOOPS)
