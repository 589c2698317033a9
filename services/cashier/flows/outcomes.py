"""Apply what a channel says (notification, status query, close, expiry) by compare-and-set.

Every path that learns a channel outcome ends here, so there is exactly one place where a payment
or refund changes state because of a channel. Each call reads the current rows, asks the domain what
the outcome changes, and applies it with CAS updates in one transaction together with the event and
the merchant webhook. If a concurrent writer got there first, the CAS matches nothing, the
transaction rolls back, and the decision is made again on fresh rows, where it is a no-op.
"""

from __future__ import annotations

from typing import Any

from libs.common.db import Tx
from libs.common.logging import get_logger
from services.cashier.connectors.base import RefundResult, TradeQueryResult, TradeStatus, channel_discount_summary
from services.cashier.connectors.base import RefundStatus as ChannelRefundStatus
from services.cashier.domain.payments import AttemptStatus, Outcome, OutcomeDecision, PaymentStatus, decide_outcome
from services.cashier.domain.refunds import RefundStatus
from services.cashier.events import (
    PAYMENT_CLOSED,
    PAYMENT_FAILED,
    PAYMENT_SUCCEEDED,
    PAYMENTS_TOPIC,
    REFUND_FAILED,
    REFUND_SUCCEEDED,
    REFUNDS_TOPIC,
    payment_event_data,
    refund_event_data,
)
from services.cashier.flows.context import Cashier
from services.cashier.flows.views import payment_view, refund_view
from services.cashier.flows.webhooks import enqueue_webhook
from services.cashier.store.payments import cas_attempt, cas_payment, get_attempt, get_payment_unscoped
from services.cashier.store.refunds import add_refunded, cas_refund, get_refund_unscoped, release_refund

log = get_logger("juhe.cashier.outcomes")

CAS_ROUNDS_MAX = 5

_OUTCOMES = {
    TradeStatus.SUCCEEDED: Outcome.SUCCEEDED,
    TradeStatus.FAILED: Outcome.FAILED,
    TradeStatus.CLOSED: Outcome.CLOSED,
}
_PAYMENT_EVENTS = {
    PaymentStatus.SUCCEEDED: PAYMENT_SUCCEEDED,
    PaymentStatus.FAILED: PAYMENT_FAILED,
    PaymentStatus.CLOSED: PAYMENT_CLOSED,
}


class _LostRace(Exception):
    """A CAS matched nothing: roll back and decide again on fresh rows."""


async def publish_payment_final(
    tx: Tx, cashier: Cashier, payment: Any, attempt: Any | None, *, source: str, **extra: Any
) -> None:
    """The event and merchant webhook of a payment that just reached a final state (same transaction)."""
    event_type = _PAYMENT_EVENTS[PaymentStatus(payment.status)]
    envelope = tx.publish(
        topic=PAYMENTS_TOPIC,
        type=event_type,
        subject=payment.id,
        data=payment_event_data(payment, attempt, outcome=payment.status, source=source, **extra),
    )
    await enqueue_webhook(tx, cashier, payment=payment, envelope=envelope, data=payment_view(payment))


async def apply_trade_result(cashier: Cashier, *, attempt_id: str, result: TradeQueryResult, source: str) -> bool:
    """Apply a channel's trade state to an attempt and its payment; True if anything changed."""
    outcome = _OUTCOMES.get(result.status)
    if outcome is None:
        return False  # pending / not found: nothing final to apply
    for _ in range(CAS_ROUNDS_MAX):
        try:
            async with cashier.uow.begin() as tx:
                return await _apply_once(tx, cashier, attempt_id, outcome, result, source)
        except _LostRace:
            continue
    log.error("gave up applying a trade result after repeated races", attempt_id=attempt_id)
    return False


async def _apply_once(
    tx: Tx, cashier: Cashier, attempt_id: str, outcome: Outcome, result: TradeQueryResult, source: str
) -> bool:
    attempt = await get_attempt(tx.conn, attempt_id)
    if attempt is None:
        return False
    payment = await get_payment_unscoped(tx.conn, attempt.payment_id)
    assert payment is not None
    if outcome is Outcome.SUCCEEDED and result.amount_minor is not None and result.amount_minor != payment.amount_minor:
        # A success for another amount is a forgery or a channel bug: never mark it paid; keep polling.
        log.error(
            "channel reports success with a different amount; not applied",
            attempt_id=attempt_id,
            expected=payment.amount_minor,
            reported=result.amount_minor,
        )
        return False
    decision: OutcomeDecision = decide_outcome(
        payment_status=PaymentStatus(payment.status),
        attempt_status=AttemptStatus(attempt.status),
        is_current_attempt=payment.current_attempt_id == attempt.id,
        outcome=outcome,
    )
    if not decision.changes_anything:
        return False
    now = cashier.clock()
    if decision.attempt_to is not None:
        fields: dict[str, Any] = {"finished_at": now, "next_poll_at": None}
        if result.channel_trade_no:
            fields["channel_trade_no"] = result.channel_trade_no
        if decision.duplicate_success:
            fields["duplicate_success"] = True
        attempt = await cas_attempt(
            tx.conn, attempt.id, old=AttemptStatus(attempt.status), new=decision.attempt_to, **fields
        )
        if attempt is None:
            raise _LostRace
        if decision.duplicate_success:
            log.error(
                "payer paid twice: attempt succeeded after the payment succeeded elsewhere",
                attempt_id=attempt.id,
                payment_id=payment.id,
            )
    if decision.payment_to is not None:
        pay_fields: dict[str, Any] = {}
        if decision.payment_to is PaymentStatus.SUCCEEDED:
            pay_fields = {
                "current_attempt_id": attempt.id,
                "channel": attempt.channel,
                "route_id": attempt.route_id,
                "fee_minor": attempt.fee_minor,
                "fee_rate_bps": attempt.fee_rate_bps,
                "channel_trade_no": result.channel_trade_no or attempt.channel_trade_no,
                "succeeded_at": result.paid_at or now,
                "late_success": decision.late_success,
            }
            if result.channel_discounts:
                pay_fields["channel_discount"] = channel_discount_summary(result.channel_discounts)
            if result.wallet_split is not None:
                pay_fields["wallet_split"] = result.wallet_split
        elif decision.payment_to is PaymentStatus.FAILED:
            pay_fields = {"failed_at": now, "failure_code": "channel_failed", "failure_message": result.detail}
        else:
            pay_fields = {"closed_at": now, "failure_code": "closed_at_channel"}
        payment = await cas_payment(
            tx.conn, payment.id, old=PaymentStatus(payment.status), new=decision.payment_to, **pay_fields
        )
        if payment is None:
            raise _LostRace
        extra: dict[str, Any] = {}
        if decision.payment_to is PaymentStatus.SUCCEEDED:
            # The channel's own coupons (promotion_detail / voucher_detail_list), apart from Juhe's `discount`
            extra["channel_discount"] = payment.channel_discount
            # A wallet payment's cash and top-up bonus parts (migration 0021); null for a channel's payment.
            extra["wallet_split"] = payment.wallet_split
        await publish_payment_final(tx, cashier, payment, attempt, source=source, **extra)
    return True


async def close_locally(cashier: Cashier, *, payment_id: str, reason: str) -> bool:
    """Close an open payment and its live attempt (after the channel close, or when nothing is live)."""
    for _ in range(CAS_ROUNDS_MAX):
        try:
            async with cashier.uow.begin() as tx:
                payment = await get_payment_unscoped(tx.conn, payment_id)
                assert payment is not None
                if payment.status not in (PaymentStatus.CREATED, PaymentStatus.PROCESSING):
                    return False
                now = cashier.clock()
                attempt = await get_attempt(tx.conn, payment.current_attempt_id) if payment.current_attempt_id else None
                if attempt is not None and attempt.status in (AttemptStatus.CREATED, AttemptStatus.PROCESSING):
                    attempt = await cas_attempt(
                        tx.conn,
                        attempt.id,
                        old=AttemptStatus(attempt.status),
                        new=AttemptStatus.CLOSED,
                        finished_at=now,
                        next_poll_at=None,
                    )
                    if attempt is None:
                        raise _LostRace
                payment = await cas_payment(
                    tx.conn,
                    payment.id,
                    old=PaymentStatus(payment.status),
                    new=PaymentStatus.CLOSED,
                    closed_at=now,
                    failure_code=reason,
                )
                if payment is None:
                    raise _LostRace
                await publish_payment_final(tx, cashier, payment, attempt, source=reason, close_reason=reason)
                return True
        except _LostRace:
            continue
    return False


async def apply_refund_result(cashier: Cashier, *, refund_id: str, result: RefundResult, source: str) -> bool:
    """Apply a channel's refund state; True if the refund reached a final state now."""
    if result.status is ChannelRefundStatus.SUCCEEDED:
        target = RefundStatus.SUCCEEDED
    elif result.status is ChannelRefundStatus.FAILED:
        target = RefundStatus.FAILED
    else:
        return False
    return await finish_refund(
        cashier,
        refund_id=refund_id,
        target=target,
        source=source,
        channel_refund_no=result.channel_refund_no,
        succeeded_at=result.succeeded_at,
        wallet_split=result.wallet_split,
    )


async def finish_refund(
    cashier: Cashier,
    *,
    refund_id: str,
    target: RefundStatus,
    source: str,
    channel_refund_no: str | None = None,
    succeeded_at: Any = None,
    failure_code: str | None = None,
    failure_message: str | None = None,
    wallet_split: dict[str, int] | None = None,
) -> bool:
    async with cashier.uow.begin() as tx:
        refund = await get_refund_unscoped(tx.conn, refund_id)
        if refund is None or refund.status != RefundStatus.PENDING:
            return False
        fields: dict[str, Any] = {"next_poll_at": None}
        if channel_refund_no:
            fields["channel_refund_no"] = channel_refund_no
        if target is RefundStatus.SUCCEEDED:
            fields["succeeded_at"] = succeeded_at or cashier.clock()
            if wallet_split is not None:
                fields["wallet_split"] = wallet_split
        else:
            fields["failure_code"] = failure_code or "channel_failed"
            fields["failure_message"] = failure_message
        refund = await cas_refund(tx.conn, refund_id, old=RefundStatus.PENDING, new=target, **fields)
        if refund is None:
            return False  # someone else finished it: their transaction published the event
        if target is RefundStatus.SUCCEEDED:
            payment: Any = await add_refunded(tx.conn, refund.payment_id, refund_minor=refund.amount_minor)
            event_type = REFUND_SUCCEEDED
        else:
            await release_refund(tx.conn, refund.payment_id, refund_minor=refund.amount_minor)
            payment = await get_payment_unscoped(tx.conn, refund.payment_id)
            event_type = REFUND_FAILED
        envelope = tx.publish(
            topic=REFUNDS_TOPIC,
            type=event_type,
            subject=refund.id,
            data=refund_event_data(
                refund,
                payment,
                outcome=refund.status,
                source=source,
                # A wallet payment's parts and where this refund went back (migration 0021); null otherwise.
                wallet_split=refund.wallet_split,
                payment_wallet_split=payment.wallet_split,
            ),
        )
        await enqueue_webhook(tx, cashier, payment=payment, envelope=envelope, data=refund_view(refund))
        return True
