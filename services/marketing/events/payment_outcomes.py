"""The cashier's payment outcomes applied to the coupon it redeemed (`cashier.payments`, `cashier.refunds`).

Why by event and not by the cashier calling confirm/release: every way a payment ends (notification, poll,
merchant close, expiry, re-drive after a crash, late success) publishes its `payment.*` event from the outbox
in the transaction of the change, at least once. Consuming them here means no outcome path can forget the
coupon, and the inbox makes each event count once. A payment carries its lock in `discount.redemption_id`;
a refund in `payment_discount.redemption_id`.

- `payment.succeeded` → confirm (the coupon is used). A lock that ran out and whose coupon was taken since
  cannot be confirmed (`lock_expired`): the payer still had the discount at the channel, so the payment's own
  event is what the ledger posts; this is logged for the operators.
- `payment.failed` / `payment.closed` → release (`payment_failed` / `payment_closed`); a repeat is a no-op and a
  coupon a late success already used stays used.
- `refund.succeeded` → the redemption's refund rule (proportional reversal; the coupon back on a full refund
  when the stock says so), idempotent by the refund id. Refunds and payments are on different topics, so a
  refund may arrive first: it proves the payment succeeded, so it confirms the redemption (idempotent) before
  applying its rule, and the later `payment.succeeded` finds it used. Any order gives one state
  (docs/consistency.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from libs.common.db import Tx
from libs.common.errors import Problem
from libs.common.events import Envelope
from libs.common.logging import get_logger
from services.marketing.domain.errors import COUPON_USED, LOCK_EXPIRED, REDEMPTION_NOT_FOUND, REDEMPTION_NOT_USED
from services.marketing.flows import redemptions

log = get_logger("juhe.marketing.payment_outcomes")

RELEASE_REASONS = {"payment.failed": "payment_failed", "payment.closed": "payment_closed"}
# Refusals that describe a state the event cannot change (logged, never retried: a retry would say the same).
SETTLED_REFUSALS = frozenset({COUPON_USED.code, LOCK_EXPIRED.code, REDEMPTION_NOT_FOUND.code, REDEMPTION_NOT_USED.code})


def _redemption_of(discount: Any) -> str | None:
    if isinstance(discount, dict) and isinstance(discount.get("redemption_id"), str):
        return str(discount["redemption_id"])
    return None


def _when(value: Any, fallback: str) -> datetime:
    return datetime.fromisoformat(str(value or fallback))


async def on_payment_event(tx: Tx, event: Envelope) -> None:
    """A payment with a coupon reached a final state: confirm or release its lock."""
    redemption_id = _redemption_of(event.data.get("discount"))
    if redemption_id is None:
        return
    try:
        if event.type == "payment.succeeded":
            await redemptions.confirm(tx, redemption_id, _when(event.data.get("succeeded_at"), event.time))
        elif event.type in RELEASE_REASONS:
            await redemptions.release(tx, redemption_id, RELEASE_REASONS[event.type], _when(None, event.time))
    except Problem as exc:
        if exc.spec.code not in SETTLED_REFUSALS:
            raise
        log.warning(
            "payment outcome not applicable to its coupon",
            payment_id=event.data.get("payment_id"),
            redemption_id=redemption_id,
            event_type=event.type,
            code=exc.spec.code,
        )


async def on_refund_event(tx: Tx, event: Envelope) -> None:
    """A refund of a payment with a coupon succeeded: apply the stock's refund rule to its redemption."""
    redemption_id = _redemption_of(event.data.get("payment_discount"))
    if redemption_id is None or event.type != "refund.succeeded":
        return
    try:
        await redemptions.confirm(tx, redemption_id, _when(None, event.time))
        await redemptions.refund(
            tx, redemption_id, refund_id=str(event.data["refund_id"]), refund_minor=int(event.data["amount_minor"])
        )
    except Problem as exc:
        if exc.spec.code not in SETTLED_REFUSALS:
            raise
        log.warning(
            "refund not applicable to its coupon",
            refund_id=event.data.get("refund_id"),
            redemption_id=redemption_id,
            code=exc.spec.code,
        )
