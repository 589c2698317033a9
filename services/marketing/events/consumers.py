"""What marketing consumes: one place that names every subscription and hands each event to its flows.

Coupons redeemed online: confirm on `payment.succeeded`, release on `payment.failed|closed`, the refund rule on
`refund.succeeded` (events/payment_outcomes.py, the adapter to flows/redemptions.py). Points: earn on
`payment.succeeded`, take back on `refund.succeeded` (flows/points.py). Top-up promotions: a bonus on a paid
`wallet_topup`, revoked on its refund (flows/topups.py). One subscription per topic for those, every effect in the
event's one transaction; rewards on events (flows/rewards.py) have their own subscription on `cashier.payments`
(the inbox runs every subscription of a topic in that same transaction). Payloads: docs/events.md.
"""

from __future__ import annotations

from datetime import UTC, datetime

from libs.common.db import Tx
from libs.common.events import Envelope
from libs.common.inbox import Subscription
from services.marketing.config import Settings
from services.marketing.events import CASHIER_PAYMENTS_TOPIC, CASHIER_REFUNDS_TOPIC, payment_outcomes
from services.marketing.flows import points, rewards, topups


def subscriptions(settings: Settings) -> list[Subscription]:
    async def on_payment(tx: Tx, event: Envelope) -> None:
        await payment_outcomes.on_payment_event(tx, event)
        await points.on_payment_event(tx, event, day_timezone=settings.day_timezone)
        await topups.on_payment_event(tx, event, topup_merchant_id=settings.wallet_topup_merchant_id)

    async def on_refund(tx: Tx, event: Envelope) -> None:
        await payment_outcomes.on_refund_event(tx, event)
        await points.on_refund_event(tx, event)  # stores the refund fact top-ups read too: keep it first
        await topups.on_refund_event(tx, event, now=datetime.now(UTC))

    async def on_first_payment(tx: Tx, event: Envelope) -> None:
        await rewards.on_payment_event(tx, event, now=datetime.now(UTC), day_timezone=settings.day_timezone)

    return [
        Subscription(
            CASHIER_PAYMENTS_TOPIC, on_payment, frozenset({"payment.succeeded", "payment.failed", "payment.closed"})
        ),
        Subscription(CASHIER_REFUNDS_TOPIC, on_refund, frozenset({"refund.succeeded"})),
        Subscription(CASHIER_PAYMENTS_TOPIC, on_first_payment, frozenset({"payment.succeeded"})),
    ]
