"""Apply what a channel says (notification, status query, close, expiry) by compare-and-set.

Every path that learns a channel outcome ends here, so there is exactly one place where a payment
or refund changes state because of a channel. Each call reads the current rows, asks the domain what
the outcome changes, and applies it with CAS updates in one transaction together with the event and
the merchant webhook. If a concurrent writer got there first, the CAS matches nothing, the
transaction rolls back, and the decision is made again on fresh rows, where it is a no-op.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx, new_envelope, outbox_row
from libs.common.logging import get_logger
from libs.common.modes import Mode, mode_of
from services.cashier.connectors.base import RefundResult, TradeQueryResult, TradeStatus, channel_discount_summary
from services.cashier.connectors.base import RefundStatus as ChannelRefundStatus
from services.cashier.domain.payments import AttemptStatus, Outcome, OutcomeDecision, PaymentStatus, decide_outcome
from services.cashier.domain.records import AttemptRecord, PaymentRecord
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
from services.cashier.flows.webhooks import enqueue_webhook, webhook_rows
from services.cashier.store.notifications import NotifiedAttempt, get_notified_attempt
from services.cashier.store.payments import (
    SuccessValues,
    get_attempt,
    get_payment_unscoped,
    mark_attempt_closed,
    mark_attempt_failed,
    mark_attempt_succeeded,
    mark_payment_closed,
    mark_payment_failed,
    mark_payment_succeeded,
    mark_succeeded,
    settle_succeeded,
    succeeded_records,
)
from services.cashier.store.refunds import (
    add_refunded,
    get_refund_unscoped,
    mark_refund_failed,
    mark_refund_succeeded,
    release_refund,
)
from services.cashier.store.webhook_endpoints import DeliveryTarget

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
    tx: Tx,
    cashier: Cashier,
    payment: PaymentRecord,
    attempt: AttemptRecord | None,
    *,
    source: str,
    targets: Sequence[DeliveryTarget] | None = None,
    **extra: Any,
) -> None:
    """The event and merchant webhook of a payment that just reached a final state (same transaction); `targets` when
    the caller read where the webhook goes with the payment (else `enqueue_webhook` reads them)."""
    envelope = tx.publish(topic=PAYMENTS_TOPIC, **_final_event(payment, attempt, source=source, **extra))
    await enqueue_webhook(tx, cashier, payment=payment, envelope=envelope, data=payment_view(payment), targets=targets)


def _final_event(payment: PaymentRecord, attempt: AttemptRecord | None, *, source: str, **extra: Any) -> dict[str, Any]:
    """The `payment.*` event of a payment that just reached a final state: its type, subject and data."""
    return {
        "type": _PAYMENT_EVENTS[payment.status],
        "subject": payment.id,
        "data": payment_event_data(payment, attempt, outcome=payment.status, source=source, **extra),
    }


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


class NotifiedTrade(StrEnum):
    """What `apply_notified_trade` did with a verified notification of a trade."""

    APPLIED = "applied"  # applied by compare-and-set (or nothing to change: a repeat, or not final)
    UNKNOWN = "unknown"  # no attempt of the merchant's channel has that out_trade_no
    OTHER_MODE = "other_mode"  # the payment's mode is not one whose config verified it
    STALE_CONFIG = "stale_config"  # the config of the payment's mode is not the version that verified it: read again


async def apply_notified_trade(
    cashier: Cashier,
    *,
    merchant_id: str,
    channel: str,
    result: TradeQueryResult,
    versions: Mapping[Mode, int],
    verified: Collection[Mode],
) -> tuple[NotifiedTrade, Mode | None]:
    """Apply a channel notification's trade state: the attempt, its payment, the version of the config of the payment's
    mode and the webhook's targets read in one statement (store/notifications.py), then the writes. `versions` are the
    config versions the notification was verified with (mode → version), `verified` the modes whose config verified
    it. Nothing is applied unless the config of the payment's mode is, in the database now, the version that verified
    it (else STALE_CONFIG: the caller reads the configs again and verifies again) and that mode verified it (a
    sandbox's keys never settle a live payment, nor a live config's a test one). Returns what happened and the
    payment's mode.

    The read stands alone (autocommit): a READ COMMITTED transaction's read locked nothing either, and every write
    re-checks the rows it changes. A success that moves both the attempt and its payment to succeeded (the usual one,
    and a late one after a close or failure) is then ONE statement on the same connection (`_settle_success`): two
    round trips where BEGIN, the read, the compare-and-sets, the webhook's writes and COMMIT were five
    (docs/performance.md, "Seventh pass: the cashier"). Anything else (a failure, a close, a duplicate success, the
    payment of an attempt already succeeded) is a transaction, as on every other outcome path; a notification that
    changes nothing (a duplicate) is the read alone."""
    outcome = _OUTCOMES.get(result.status)
    for _ in range(CAS_ROUNDS_MAX):
        async with cashier.uow.autocommit() as conn:
            found = await get_notified_attempt(
                conn, merchant_id=merchant_id, channel=channel, out_trade_no=result.out_trade_no
            )
            if found is None:
                return NotifiedTrade.UNKNOWN, None
            mode = mode_of(found.payment.livemode)
            if found.config_version != versions.get(mode):
                return NotifiedTrade.STALE_CONFIG, mode
            if mode not in verified:
                return NotifiedTrade.OTHER_MODE, mode
            decision = None if outcome is None else _decide(found.attempt, found.payment, outcome, result)
            if decision is None:
                return NotifiedTrade.APPLIED, mode
            if _usual_success(decision):
                if await _settle_success(conn, cashier, found, decision, result):
                    return NotifiedTrade.APPLIED, mode
                continue  # a row changed since the read: nothing was written; read again and decide again
        try:  # with the read's connection given back: a request never holds two
            async with cashier.uow.begin() as tx:
                await _apply_decision(
                    tx, cashier, found.attempt, found.payment, decision, result, "notification", found.targets
                )
            return NotifiedTrade.APPLIED, mode
        except _LostRace:
            continue
    log.error("gave up applying a notification after repeated races", out_trade_no=result.out_trade_no)
    return NotifiedTrade.APPLIED, None


async def _settle_success(
    conn: AsyncConnection, cashier: Cashier, found: NotifiedAttempt, decision: OutcomeDecision, result: TradeQueryResult
) -> bool:
    """The usual success in one autocommit statement on `conn` (store/payments.py `settle_succeeded`): both
    compare-and-sets on the rows as read, with `payment.succeeded`'s outbox row, the merchant event and its
    deliveries, all built before it from the rows it writes (`succeeded_records`): written together or not at all.
    False when either row changed since it was read: nothing was written."""
    now = cashier.clock()
    succeeded: SuccessValues = {
        "finished_at": now,
        "channel_trade_no": result.channel_trade_no,
        "succeeded_at": result.paid_at or now,
        "late_success": decision.late_success,
        "channel_discount": _channel_discount(result),
        "wallet_split": result.wallet_split,
    }
    attempt, payment = succeeded_records(found.attempt, found.payment, **succeeded)
    envelope = new_envelope(
        cashier.uow.source, **_final_event(payment, attempt, source="notification", **_final_extra(payment))
    )
    event, deliveries = webhook_rows(
        cashier, payment=payment, envelope=envelope, data=payment_view(payment), targets=found.targets
    )
    return await settle_succeeded(
        conn,
        found.attempt,
        found.payment,
        row_versions=found.row_versions,
        **succeeded,
        event=event,
        deliveries=deliveries,
        outbox_rows=[outbox_row(PAYMENTS_TOPIC, envelope)],
    )


async def _apply_once(
    tx: Tx, cashier: Cashier, attempt_id: str, outcome: Outcome, result: TradeQueryResult, source: str
) -> bool:
    attempt = await get_attempt(tx.conn, attempt_id)
    if attempt is None:
        return False
    payment = await get_payment_unscoped(tx.conn, attempt.payment_id)
    assert payment is not None
    return await _apply_read(tx, cashier, attempt, payment, outcome, result, source)


async def _apply_read(
    tx: Tx,
    cashier: Cashier,
    attempt: AttemptRecord,
    payment: PaymentRecord,
    outcome: Outcome,
    result: TradeQueryResult,
    source: str,
) -> bool:
    """Decide and apply on the attempt and payment just read in `tx`; raises _LostRace when a CAS matches nothing."""
    decision = _decide(attempt, payment, outcome, result)
    if decision is None:
        return False
    await _apply_decision(tx, cashier, attempt, payment, decision, result, source)
    return True


def _decide(
    attempt: AttemptRecord, payment: PaymentRecord, outcome: Outcome, result: TradeQueryResult
) -> OutcomeDecision | None:
    """What the channel's outcome changes (domain.payments.decide_outcome); None when nothing."""
    if outcome is Outcome.SUCCEEDED and result.amount_minor is not None and result.amount_minor != payment.amount_minor:
        # A success for another amount is a forgery or a channel bug: never mark it paid; keep polling.
        log.error(
            "channel reports success with a different amount; not applied",
            attempt_id=attempt.id,
            expected=payment.amount_minor,
            reported=result.amount_minor,
        )
        return None
    decision: OutcomeDecision = decide_outcome(
        payment_status=payment.status,
        attempt_status=attempt.status,
        is_current_attempt=payment.current_attempt_id == attempt.id,
        outcome=outcome,
    )
    return decision if decision.changes_anything else None


def _usual_success(decision: OutcomeDecision) -> bool:
    """The attempt and its payment both move to succeeded (late after a close or failure too), and the payer did not
    pay twice: what `mark_succeeded` and `settle_succeeded` apply in one statement."""
    return (
        decision.attempt_to is AttemptStatus.SUCCEEDED
        and decision.payment_to is PaymentStatus.SUCCEEDED
        and not decision.duplicate_success
    )


def _channel_discount(result: TradeQueryResult) -> dict[str, Any] | None:
    return channel_discount_summary(result.channel_discounts) if result.channel_discounts else None


def _final_extra(payment: PaymentRecord) -> dict[str, Any]:
    """The event data a final state adds: for a success, the channel's own coupons (promotion_detail /
    voucher_detail_list), apart from Juhe's `discount`, and a wallet payment's cash and top-up bonus parts (migration
    0021; null for a channel's payment)."""
    if payment.status is not PaymentStatus.SUCCEEDED:
        return {}
    return {"channel_discount": payment.channel_discount, "wallet_split": payment.wallet_split}


async def _apply_decision(
    tx: Tx,
    cashier: Cashier,
    attempt: AttemptRecord,
    payment: PaymentRecord,
    decision: OutcomeDecision,
    result: TradeQueryResult,
    source: str,
    targets: Sequence[DeliveryTarget] | None = None,
) -> None:
    """Apply `decision` in `tx` (with the webhook's `targets` when read with the rows); raises _LostRace when a CAS
    matches nothing."""
    now = cashier.clock()
    channel_discount = _channel_discount(result)
    if _usual_success(decision):
        # Both compare-and-sets in one statement (store/payments.py `mark_succeeded`).
        both = await mark_succeeded(
            tx.conn,
            attempt,
            payment,
            finished_at=now,
            channel_trade_no=result.channel_trade_no,
            succeeded_at=result.paid_at or now,
            late_success=decision.late_success,
            channel_discount=channel_discount,
            wallet_split=result.wallet_split,
        )
        if both is None:
            raise _LostRace
        attempt, payment = both
    else:
        attempt, payment = await _move_one_by_one(tx, attempt, payment, decision, result, now, channel_discount)
    if decision.payment_to is not None:
        await publish_payment_final(
            tx, cashier, payment, attempt, source=source, targets=targets, **_final_extra(payment)
        )


async def _move_one_by_one(
    tx: Tx,
    attempt: AttemptRecord,
    payment: PaymentRecord,
    decision: OutcomeDecision,
    result: TradeQueryResult,
    now: datetime,
    channel_discount: dict[str, Any] | None,
) -> tuple[AttemptRecord, PaymentRecord]:
    """The decided transitions one statement each (the attempt's, then the payment's); raises _LostRace when a
    compare-and-set matches nothing."""
    if decision.attempt_to is not None:
        moved = await _finish_attempt(
            tx, attempt, decision.attempt_to, finished_at=now, result=result, duplicate=decision.duplicate_success
        )
        if moved is None:
            raise _LostRace
        attempt = moved
        if decision.duplicate_success:
            log.error(
                "payer paid twice: attempt succeeded after the payment succeeded elsewhere",
                attempt_id=attempt.id,
                payment_id=payment.id,
            )
    if decision.payment_to is None:
        return attempt, payment
    finished: PaymentRecord | None
    if decision.payment_to is PaymentStatus.SUCCEEDED:
        finished = await mark_payment_succeeded(
            tx.conn,
            payment,
            attempt=attempt,
            channel_trade_no=result.channel_trade_no or attempt.channel_trade_no,
            succeeded_at=result.paid_at or now,
            late_success=decision.late_success,
            channel_discount=channel_discount,
            wallet_split=result.wallet_split,
        )
    elif decision.payment_to is PaymentStatus.FAILED:
        finished = await mark_payment_failed(
            tx.conn, payment, failed_at=now, failure_code="channel_failed", failure_message=result.detail
        )
    else:
        finished = await mark_payment_closed(tx.conn, payment, closed_at=now, reason="closed_at_channel")
    if finished is None:
        raise _LostRace
    return attempt, finished


async def _finish_attempt(
    tx: Tx,
    attempt: AttemptRecord,
    to: AttemptStatus,
    *,
    finished_at: datetime,
    result: TradeQueryResult,
    duplicate: bool,
) -> AttemptRecord | None:
    """The named attempt transition a channel outcome decided (domain.payments.decide_outcome)."""
    if to is AttemptStatus.SUCCEEDED:
        return await mark_attempt_succeeded(
            tx.conn,
            attempt,
            finished_at=finished_at,
            channel_trade_no=result.channel_trade_no,
            duplicate_success=duplicate,
        )
    if to is AttemptStatus.FAILED:
        return await mark_attempt_failed(
            tx.conn, attempt, finished_at=finished_at, channel_trade_no=result.channel_trade_no
        )
    return await mark_attempt_closed(
        tx.conn, attempt, finished_at=finished_at, channel_trade_no=result.channel_trade_no
    )


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
                    attempt = await mark_attempt_closed(tx.conn, attempt, finished_at=now)
                    if attempt is None:
                        raise _LostRace
                closed = await mark_payment_closed(tx.conn, payment, closed_at=now, reason=reason)
                if closed is None:
                    raise _LostRace
                await publish_payment_final(tx, cashier, closed, attempt, source=reason, close_reason=reason)
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
    succeeded_at: datetime | None = None,
    failure_code: str | None = None,
    failure_message: str | None = None,
    wallet_split: dict[str, int] | None = None,
) -> bool:
    async with cashier.uow.begin() as tx:
        refund = await get_refund_unscoped(tx.conn, refund_id)
        if refund is None or refund.status != RefundStatus.PENDING:
            return False
        if target is RefundStatus.SUCCEEDED:
            finished = await mark_refund_succeeded(
                tx.conn,
                refund,
                succeeded_at=succeeded_at or cashier.clock(),
                channel_refund_no=channel_refund_no,
                wallet_split=wallet_split,
            )
        else:
            finished = await mark_refund_failed(
                tx.conn,
                refund,
                failure_code=failure_code or "channel_failed",
                failure_message=failure_message,
                channel_refund_no=channel_refund_no,
            )
        if finished is None:
            return False  # someone else finished it: their transaction published the event
        refund = finished
        payment: PaymentRecord | None
        if target is RefundStatus.SUCCEEDED:
            payment = await add_refunded(tx.conn, refund.payment_id, refund_minor=refund.amount_minor)
            event_type = REFUND_SUCCEEDED
        else:
            await release_refund(tx.conn, refund.payment_id, refund_minor=refund.amount_minor)
            payment = await get_payment_unscoped(tx.conn, refund.payment_id)
            event_type = REFUND_FAILED
        assert payment is not None  # a refund's payment is never deleted (foreign key)
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
