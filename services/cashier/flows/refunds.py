"""Refunds: reserve the amount atomically, ask the channel, settle by its answer, a notification or a poll."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from libs.common.errors import IDEMPOTENCY_KEY_REUSED, Problem
from libs.common.ids import new_id
from libs.common.logging import get_logger
from services.cashier.connectors.base import (
    ChannelError,
    ChannelUnavailable,
    Connector,
    InvalidSignature,
    RefundRequest,
    RefundResult,
)
from services.cashier.connectors.base import (
    RefundStatus as ChannelRefundStatus,
)
from services.cashier.domain.errors import (
    DUPLICATE_MERCHANT_REFUND,
    PAYMENT_NOT_FOUND,
    REFUND_EXCEEDS_REMAINING,
    REFUND_NOT_ALLOWED,
    REFUND_NOT_FOUND,
)
from services.cashier.domain.payments import PaymentPurpose, PaymentStatus, poll_delay_seconds, request_fingerprint
from services.cashier.domain.records import AttemptRecord, PaymentRecord, RefundRecord
from services.cashier.domain.refunds import RefundStatus, check_refund
from services.cashier.flows.context import Cashier
from services.cashier.flows.outcomes import apply_refund_result, finish_refund
from services.cashier.flows.views import refund_view
from services.cashier.store.payments import get_attempt, get_payment, get_payment_unscoped
from services.cashier.store.refunds import (
    claim_refunds_to_poll,
    get_refund,
    get_refund_by_merchant_no,
    get_refund_by_request_key,
    insert_refund,
    list_refunds,
    reserve_refund,
    schedule_refund_poll,
)

log = get_logger("juhe.cashier.refunds")


@dataclass(frozen=True, slots=True)
class RefundDraft:
    amount_minor: int
    reason: str | None
    merchant_refund_no: str | None
    # The request's Idempotency-Key (forwarded by the gateway). Without a merchant refund number it is what
    # makes a retry find the refund already made: the gateway frees a key whose request got a 5xx, and the
    # cashier may have committed the refund before it died.
    request_key: str | None = None


@dataclass(frozen=True, slots=True)
class RefundCreateResult:
    refund: dict[str, Any]
    created: bool


class _NumberTaken(Exception):
    pass


@runtime_checkable
class Revocable(Protocol):
    """A channel with a void besides the refund: UnionPay's 消费撤销 (txnType 31) of a same-day consume.

    A revoke cancels the consume before settlement, so the merchant pays no fee on it; a 退货 refund
    (txnType 04) is a new transaction after settlement, and the consume's fee is kept.
    """

    def revocable(self, request: RefundRequest) -> bool: ...

    async def revoke(self, request: RefundRequest) -> RefundResult: ...


async def return_money(connector: Connector, request: RefundRequest) -> RefundResult:
    """Revoke when the channel can and this refund qualifies (full amount, same day), else refund.

    Deterministic for a given day: a retry of a refund that never reached the channel asks the same way,
    and both use the refund's own number, so `query_refund` finds either. A revoke the channel refuses
    (UnionPay past its daily cut-off, say) moved no money: the same refund is then asked as a 退货.
    """
    if isinstance(connector, Revocable) and connector.revocable(request):
        try:
            return await connector.revoke(request)
        except ChannelError as exc:
            if exc.retryable:
                raise
            log.info("revoke refused; asking a refund instead", out_refund_no=request.out_refund_no, code=exc.code)
    result: RefundResult = await connector.refund(request)
    return result


async def read_refund(cashier: Cashier, *, merchant_id: str, refund_id: str) -> dict[str, Any]:
    async with cashier.uow.read() as conn:
        refund = await get_refund(conn, merchant_id=merchant_id, refund_id=refund_id)
    if refund is None:
        raise Problem(REFUND_NOT_FOUND, f"refund {refund_id} does not exist")
    return refund_view(refund)


async def read_refunds(
    cashier: Cashier, *, merchant_id: str, payment_id: str, limit: int, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a payment's refunds (oldest first) and the cursor of the next page, if any."""
    async with cashier.uow.read() as conn:
        payment = await get_payment(conn, merchant_id=merchant_id, payment_id=payment_id)
        if payment is None:
            raise Problem(PAYMENT_NOT_FOUND, f"payment {payment_id} does not exist")
        rows = await list_refunds(
            conn, merchant_id=merchant_id, payment_id=payment_id, limit=limit + 1, after_id=cursor
        )
    page = [refund_view(r) for r in rows[:limit]]
    return page, page[-1]["id"] if len(rows) > limit else None


async def _replay(
    cashier: Cashier, merchant_id: str, payment_id: str, draft: RefundDraft, fingerprint: str
) -> RefundCreateResult | None:
    """The refund this request already made: by merchant refund number, else by the request's key."""
    async with cashier.uow.read() as conn:
        if draft.merchant_refund_no:
            existing = await get_refund_by_merchant_no(
                conn, merchant_id=merchant_id, merchant_refund_no=draft.merchant_refund_no
            )
            spec = DUPLICATE_MERCHANT_REFUND
            detail = f"refund number {draft.merchant_refund_no} was used for another request"
        elif draft.request_key:
            existing = await get_refund_by_request_key(conn, merchant_id=merchant_id, request_key=draft.request_key)
            spec, detail = IDEMPOTENCY_KEY_REUSED, "this Idempotency-Key was used with a different request"
        else:
            return None
    if existing is None:
        return None
    if existing.request_sha256 != fingerprint or existing.payment_id != payment_id:
        raise Problem(spec, detail, refund_id=existing.id)
    return RefundCreateResult(refund_view(existing), created=False)


async def create_refund(
    cashier: Cashier, *, merchant_id: str, payment_id: str, draft: RefundDraft
) -> RefundCreateResult:
    fingerprint = request_fingerprint(
        {
            "payment_id": payment_id,
            "amount_minor": draft.amount_minor,
            "reason": draft.reason,
            "merchant_refund_no": draft.merchant_refund_no,
        }
    )
    replay = await _replay(cashier, merchant_id, payment_id, draft, fingerprint)
    if replay is not None:
        return replay
    async with cashier.uow.read() as conn:
        payment = await get_payment(conn, merchant_id=merchant_id, payment_id=payment_id)
    if payment is None:
        raise Problem(PAYMENT_NOT_FOUND, f"payment {payment_id} does not exist")
    top_up = payment.purpose == PaymentPurpose.WALLET_TOPUP
    if top_up and (cashier.ledger is None or not cashier.ledger.configured):
        # The money was credited to the user's wallet (ledger §3.7): only the ledger can hold it for a refund.
        raise Problem(REFUND_NOT_ALLOWED, "a wallet top-up is refunded only with the ledger (ledger_url)")
    check_refund(
        payment_status=PaymentStatus(payment.status),
        amount_minor=payment.amount_minor,
        refund_reserved_minor=payment.refund_reserved_minor,
        refund_minor=draft.amount_minor,
    )
    try:
        async with cashier.uow.begin() as tx:
            # The refund row first, then the payment's reservation: the order in which a refund's outcome
            # (finish_refund: refund row, then payment) takes them. The other order deadlocks when a retry's
            # insert must wait on a refund row being finished while holding the payment (same request key).
            assert payment.current_attempt_id is not None  # a succeeded payment names the attempt that paid
            attempt = await get_attempt(tx.conn, payment.current_attempt_id)
            assert attempt is not None  # a succeeded payment's attempt never changes
            refund = await insert_refund(
                tx.conn,
                {
                    "id": new_id("re"),
                    "payment_id": payment.id,
                    "attempt_id": attempt.id,
                    "merchant_id": merchant_id,
                    "merchant_refund_no": draft.merchant_refund_no,
                    "request_key": None if draft.merchant_refund_no else draft.request_key,
                    "request_sha256": fingerprint,
                    "channel": attempt.channel,
                    "amount_minor": draft.amount_minor,
                    "currency": payment.currency,
                    "reason": draft.reason,
                    "status": RefundStatus.PENDING.value,
                    "next_poll_at": cashier.clock() + timedelta(seconds=cashier.settings.poll_initial_seconds),
                },
            )
            if refund is None:
                raise _NumberTaken
            reserved = await reserve_refund(tx.conn, payment.id, refund_minor=draft.amount_minor)
            if reserved is None:  # raising rolls the inserted refund back
                current = await get_payment_unscoped(tx.conn, payment.id)
                assert current is not None
                check_refund(
                    payment_status=PaymentStatus(current.status),
                    amount_minor=current.amount_minor,
                    refund_reserved_minor=current.refund_reserved_minor,
                    refund_minor=draft.amount_minor,
                )
                raise Problem(REFUND_EXCEEDS_REMAINING, "a concurrent refund took the remainder")
            if top_up:
                # Before the channel is asked and inside this transaction: a refusal (the holder spent the money,
                # or the ledger is down) rolls the refund and the reservation back, so nothing changed.
                await _hold_top_up_refund(cashier, refund, payment)
    except _NumberTaken:
        replay = await _replay(cashier, merchant_id, payment_id, draft, fingerprint)
        assert replay is not None
        return replay
    await _submit(cashier, refund, attempt, payment)
    return RefundCreateResult(await read_refund(cashier, merchant_id=merchant_id, refund_id=refund.id), created=True)


async def _hold_top_up_refund(cashier: Cashier, refund: RefundRecord, payment: PaymentRecord) -> None:
    """The ledger holds the refund on the holder's cash balance (docs/marketing.md "Top-up refunds"); its
    consumer posts the hold on `refund.succeeded` and voids it on `refund.failed`. A hold whose refund row is
    then not committed (the cashier dies here) is voided by the ledger's wallet round once it asks
    `GET /v1/refunds/{id}` and gets 404 (after `top_up_refund_orphan_after_seconds`): the money is the holder's
    again in minutes, not when the hold runs out."""
    assert cashier.ledger is not None
    await cashier.ledger.hold_top_up_refund(
        refund_id=refund.id, payment_id=payment.id, amount_minor=refund.amount_minor, currency=refund.currency
    )


async def _submit(cashier: Cashier, refund: RefundRecord, attempt: AttemptRecord, payment: PaymentRecord) -> None:
    """Ask the channel (idempotent by out_refund_no = refund id) and apply a final answer if any.

    Unavailable or a retryable error leaves the refund pending: the poll loop asks again.
    """
    request = RefundRequest(
        out_trade_no=attempt.out_trade_no,
        out_refund_no=refund.id,
        refund_minor=refund.amount_minor,
        total_minor=payment.amount_minor,
        currency=refund.currency,
        reason=refund.reason,
        notify_url=cashier.notify_url(refund.channel, refund.merchant_id),
    )
    try:
        connector = await cashier.connectors.get(refund.merchant_id, refund.channel, livemode=refund.livemode)
        result = await return_money(connector, request)
    except ChannelError as exc:
        if exc.retryable:
            log.info("refund retryable error; will ask again", refund_id=refund.id, code=exc.code)
            return
        await finish_refund(
            cashier,
            refund_id=refund.id,
            target=RefundStatus.FAILED,
            source="refund",
            failure_code=exc.code[:64],
            failure_message=exc.message[:500],
        )
        return
    except (ChannelUnavailable, InvalidSignature, Problem) as exc:
        log.info("refund not confirmed; will ask again", refund_id=refund.id, error=repr(exc))
        return
    await apply_refund_result(cashier, refund_id=refund.id, result=result, source="refund")


async def poll_refunds_due(cashier: Cashier) -> int:
    s = cashier.settings
    now = cashier.clock()
    async with cashier.uow.begin() as tx:
        due = await claim_refunds_to_poll(
            tx.conn, now=now, lease_until=now + timedelta(seconds=s.poll_lease_seconds), limit=s.poll_batch_max
        )
    for refund in due:
        async with cashier.uow.read() as conn:
            attempt = await get_attempt(conn, refund.attempt_id)
            payment = await get_payment_unscoped(conn, refund.payment_id)
        assert attempt is not None and payment is not None
        result: RefundResult | None = None
        try:
            connector = await cashier.connectors.get(refund.merchant_id, refund.channel, livemode=refund.livemode)
            result = await connector.query_refund(refund.id, attempt.out_trade_no)
        except (ChannelUnavailable, ChannelError, InvalidSignature, Problem) as exc:
            log.info("refund query failed", refund_id=refund.id, error=repr(exc))
        if result is not None and result.status is ChannelRefundStatus.NOT_FOUND:
            await _submit(cashier, refund, attempt, payment)  # never reached the channel: ask again
        elif result is not None and await apply_refund_result(
            cashier, refund_id=refund.id, result=result, source="poll"
        ):
            continue
        count = refund.poll_count + 1
        next_at = (
            cashier.clock()
            + timedelta(
                seconds=poll_delay_seconds(
                    count, initial_seconds=s.poll_initial_seconds, max_seconds=s.poll_backoff_max_seconds
                )
            )
            if count < s.poll_count_max
            else None
        )
        async with cashier.uow.begin() as tx:
            await schedule_refund_poll(tx.conn, refund.id, poll_count=count, next_poll_at=next_at)
    return len(due)
