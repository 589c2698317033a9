"""Coupons redeemed in store (核销), from marketing's `marketing.coupons` (docs/ledger.md §3.14).

An online redemption's funding is posted inside its payment's own transfer (§3.13, from the cashier's
events). A coupon used at the merchant's till has no payment in Juhe: the merchant was paid there, less the
discount, so the only money to move is the platform's subsidy — `coupon.used` (kind `in_store`) credits it to
the merchant's pending balance from 5201 marketing_expense, and `coupon.redemption_undone` takes it back. Each
is one transfer with a key per redemption (`<rdm>:in_store_used|undone`), so a redelivery posts nothing twice.
"""

from __future__ import annotations

from libs.common.db import Tx
from libs.common.events import Envelope
from libs.common.inbox import Subscription
from services.ledger.events.consumers import CashierPostings
from services.ledger.events.postings import IN_STORE_UNDONE, IN_STORE_USED, in_store_coupon_plan

COUPONS_TOPIC = "marketing.coupons"


class InStoreCouponPostings:
    def __init__(self, postings: CashierPostings) -> None:
        self.postings = postings  # opens the chart's accounts and submits the plan through the writer

    def subscriptions(self) -> list[Subscription]:
        return [Subscription(COUPONS_TOPIC, self.on_coupon_event, frozenset({IN_STORE_USED, IN_STORE_UNDONE}))]

    async def on_coupon_event(self, tx: Tx, event: Envelope) -> None:
        plan = in_store_coupon_plan(event.type, event.data)
        if plan is not None:
            await self.postings.post(plan)
