"""Consumers of other services' events: each adapts one event to a flow (or, for the ledger's accounts, to
settlement's mirror), inside the inbox transaction of the event (exactly-once effect). The topics and payloads
are in docs/events.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from libs.common.db import Tx
from libs.common.events import Envelope
from libs.common.inbox import batched
from services.settlement.events import (
    PAYMENT_CLOSED,
    PAYMENT_FAILED,
    PAYMENT_SUCCEEDED,
    REFUND_SUCCEEDED,
    WITHDRAWAL_REQUESTED,
)
from services.settlement.flows import payments, withdrawals
from services.settlement.flows.coupons import record_in_store_coupon
from services.settlement.store import ledger_accounts

PAYMENT_STATUSES = {PAYMENT_SUCCEEDED: "succeeded", PAYMENT_FAILED: "failed", PAYMENT_CLOSED: "closed"}


def _occurred(event: Envelope) -> datetime:
    """When the payment or refund succeeded (`succeeded_at`), else when the event says it happened."""
    fallback = datetime.fromisoformat(event.time)
    value = event.data.get("succeeded_at")
    return datetime.fromisoformat(value) if value else fallback


async def on_account_opened(tx: Tx, event: Envelope) -> None:
    """`account.opened` (ledger.accounts): settlement's mirror, where the ledger client looks first."""
    data = event.data
    await ledger_accounts.mirror_opened(
        tx.conn,
        account_id=data["id"],
        holder_id=data["holder_id"],
        currency=data["currency"],
        kind=data["kind"],
        opened_at=datetime.fromisoformat(data["created_at"]),
        source_event_id=event.id,
        livemode=payments.event_livemode(data),  # accounts opened before books existed say nothing: live
    )


async def on_payment_events(tx: Tx, events: Sequence[Envelope]) -> None:
    """`payment.succeeded|failed|closed` (cashier.payments): settlement's record of each payment and its effects;
    a run of them (the inbox's batch) reads its locks, rates, cycles, rules and calendar once (flows/payments.py)."""
    await payments.record_payments(tx, [(PAYMENT_STATUSES[e.type], e.data, _occurred(e)) for e in events])


on_payment_event = batched(on_payment_events)


async def on_refund_event(tx: Tx, event: Envelope) -> None:
    """`refund.succeeded|failed` (cashier.refunds): settlement's record of the refund and its effects."""
    await payments.record_refund(tx, event.type == REFUND_SUCCEEDED, event.data, _occurred(event))


async def on_wallet_event(tx: Tx, event: Envelope) -> None:
    """`withdrawal.requested` (ledger.wallet): remember the withdrawal; the worker pays it out."""
    if event.type != WITHDRAWAL_REQUESTED:
        return
    await withdrawals.remember_requested(tx, event.data)


async def on_coupon_event(tx: Tx, event: Envelope) -> None:
    """`coupon.used|redemption_undone` (marketing.coupons): the platform's subsidy of an in-store redemption."""
    await record_in_store_coupon(tx, event.type, event.data, event.time)
