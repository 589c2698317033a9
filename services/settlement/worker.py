"""The settlement worker: which events it consumes and which loops it runs besides the outbox relay."""

from __future__ import annotations

from libs.common.inbox import Subscription
from libs.common.web import BackgroundTask
from services.settlement.config import Settings
from services.settlement.events import (
    ACCOUNT_OPENED,
    CASHIER_PAYMENTS_TOPIC,
    CASHIER_REFUNDS_TOPIC,
    LEDGER_ACCOUNTS_TOPIC,
    LEDGER_WALLET_TOPIC,
    PAYMENT_EVENTS,
    REFUND_EVENTS,
    WITHDRAWAL_REQUESTED,
)
from services.settlement.events.consumers import (
    on_account_opened,
    on_payment_event,
    on_refund_event,
    parked_refunds_loop,
)
from services.settlement.events.coupons import COUPON_EVENTS, COUPONS_TOPIC, on_coupon_event
from services.settlement.flows.consistency import consistency_loop
from services.settlement.flows.escrow import auto_confirm_loop
from services.settlement.flows.payouts import payout_loop
from services.settlement.flows.profit_sharing import profit_sharing_loop
from services.settlement.flows.settle import settlement_loop
from services.settlement.flows.splits import split_loop
from services.settlement.flows.withdrawals import on_wallet_event, withdrawal_loop


def subscriptions(settings: Settings) -> list[Subscription]:
    return [
        Subscription(LEDGER_ACCOUNTS_TOPIC, on_account_opened, frozenset({ACCOUNT_OPENED})),
        Subscription(CASHIER_PAYMENTS_TOPIC, on_payment_event, PAYMENT_EVENTS),
        Subscription(CASHIER_REFUNDS_TOPIC, on_refund_event, REFUND_EVENTS),
        Subscription(LEDGER_WALLET_TOPIC, on_wallet_event, frozenset({WITHDRAWAL_REQUESTED})),
        Subscription(COUPONS_TOPIC, on_coupon_event, COUPON_EVENTS),  # in-store redemptions' subsidy
    ]


def background_tasks(settings: Settings) -> list[BackgroundTask]:
    return [
        split_loop,
        auto_confirm_loop,
        settlement_loop,
        payout_loop,
        withdrawal_loop,
        profit_sharing_loop,
        consistency_loop,
        parked_refunds_loop,
    ]
