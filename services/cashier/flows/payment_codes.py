"""付款码 (payer-presented code): charge the code a gate, canteen or counter scanned, then settle it.

Rules (README "付款码"):
  * The code's digits decide the channel (`payment_code_channel`: WeChat 18 digits starting 10–15,
    Alipay 16–24 digits starting 25–30, UnionPay 19 digits starting 62). Routing is asked for that
    channel's route and fee only (scene `barcode`); its choice of channel is not asked for, and a
    payment_code payment never fails over: the code belongs to one channel and one payer.
  * The charge answers at once: paid, refused, or "user is paying" (WeChat `USERPAYING`, Alipay 10003:
    the payer must enter a password). Anything but a definite answer (password step, timeout, 5xx, an
    unverifiable reply) leaves the attempt `processing`; the worker's poll queries it with backoff
    (capped by `payment_code_poll_max_seconds`) until the payment's deadline
    (`payment_code_deadline_seconds` from creation), and at the deadline reverses (WeChat) / cancels
    (Alipay) the order and closes the payment `payment_code_timeout`. A reversal also returns a
    payment the payer confirmed in the last instant, so a closed payment_code payment never holds money.
  * Only the poller (under its lease) turns a processing payment_code attempt final: the expiry loop
    skips these payments and no channel notification is asked for, so a success can never be applied
    while the same order is being reversed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from libs.common.errors import Problem
from libs.common.logging import get_logger
from services.cashier.connectors.base import (
    ChannelError,
    ChannelUnavailable,
    InvalidSignature,
    PaymentCodeRequest,
    TradeQueryResult,
    TradeStatus,
    payment_code_channel,
)
from services.cashier.domain.errors import PAYMENT_CODE_INVALID, PAYMENT_CODE_NOT_SUPPORTED
from services.cashier.domain.payments import PaymentScene
from services.cashier.domain.records import AttemptRecord, PaymentRecord
from services.cashier.flows.context import Cashier
from services.cashier.flows.outcomes import apply_trade_result, close_locally

log = get_logger("juhe.cashier.payment_codes")

# The connectors that can charge a payer-presented code, and how each ends an unfinished one.
CANCEL_METHODS: dict[str, str] = {"wechatpay": "reverse", "alipay": "cancel"}
ROUTING_SCENE = "barcode"  # routing's name for the 付款码 product
TIMEOUT_REASON = "payment_code_timeout"
WAITING_ACTION: dict[str, Any] = {"type": "payment_code", "state": "user_paying"}
# Cancelling an order the channel never received: nothing to reverse.
NOTHING_TO_CANCEL = frozenset({"ORDER_NOT_EXIST", "RESOURCE_NOT_EXISTS", "NOT_FOUND", "ACQ.TRADE_NOT_EXIST"})


class CodeConnector(Protocol):
    async def pay_with_code(self, request: PaymentCodeRequest) -> TradeQueryResult: ...

    async def query(self, out_trade_no: str) -> TradeQueryResult: ...


def is_payment_code(payment: PaymentRecord) -> bool:
    return payment.scene is PaymentScene.PAYMENT_CODE


def code_channel(auth_code: str) -> str:
    """The connector that must charge this code, or a 422 saying why none can."""
    channel = payment_code_channel(auth_code)
    if channel is None:
        raise Problem(
            PAYMENT_CODE_INVALID,
            "the scanned code matches no channel's payment code "
            "(WeChat: 18 digits from 10-15, Alipay: 16-24 digits from 25-30)",
        )
    if channel not in CANCEL_METHODS:
        raise Problem(PAYMENT_CODE_NOT_SUPPORTED, f"{channel} payment codes cannot be charged yet", channel=channel)
    return channel


def code_request(payment: PaymentRecord, attempt: AttemptRecord) -> PaymentCodeRequest:
    """Built from the stored payment only, so a re-drive charges the same code for the same order
    (the channels answer a repeated out_trade_no with the order's current state)."""
    payer = dict(payment.payer or {})
    return PaymentCodeRequest(
        out_trade_no=attempt.out_trade_no,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        description=payment.description,
        auth_code=str(payer["auth_code"]),
        device_id=(payment.metadata or {}).get("device_id"),
        store_id=(payment.metadata or {}).get("store_id"),
    )


async def charge(connector: Any, request: PaymentCodeRequest) -> TradeQueryResult:
    return await cast(CodeConnector, connector).pay_with_code(request)


def next_poll_at(cashier: Cashier, *, backoff_seconds: float, expire_at: datetime) -> datetime:
    """The next status query of a payment_code attempt: the backoff, capped, and never past the deadline
    (where the reversal happens), so the poll never stops before the order is settled one way or the other;
    past the deadline (a reversal the channel refused or did not answer) it keeps the capped pace."""
    now = cashier.clock()
    delay = timedelta(seconds=min(backoff_seconds, cashier.settings.payment_code_poll_max_seconds))
    at = min(now + delay, expire_at)
    return at if at > now else now + delay  # past the deadline (a reversal to retry): still paced


async def after_poll(
    cashier: Cashier, payment: PaymentRecord, attempt: AttemptRecord, result: TradeQueryResult | None
) -> bool:
    """Called by the poller (holding the attempt's lease) when the query changed nothing. Past the deadline,
    reverse / cancel the order and close the payment; True when the attempt is settled."""
    if payment.expire_at > cashier.clock():
        return False
    if result is not None and result.status is TradeStatus.SUCCEEDED:
        return False  # a success the CAS refused (amount mismatch): never reverse blindly, keep asking
    try:
        connector = await cashier.connectors.get(payment.merchant_id, attempt.channel, livemode=payment.livemode)
        await getattr(connector, CANCEL_METHODS[attempt.channel])(attempt.out_trade_no)
    except ChannelError as exc:
        if exc.code not in NOTHING_TO_CANCEL:
            log.warning("payment code cancel refused; retrying", attempt_id=attempt.id, error=repr(exc))
            return False
    except (ChannelUnavailable, InvalidSignature, Problem) as exc:
        log.info("payment code cancel failed; retrying", attempt_id=attempt.id, error=repr(exc))
        return False
    closed = await close_locally(cashier, payment_id=payment.id, reason=TIMEOUT_REASON)
    log.info("payment code reversed at its deadline", payment_id=payment.id, channel=attempt.channel, closed=closed)
    return True


async def apply_charge(cashier: Cashier, attempt_id: str, result: TradeQueryResult) -> None:
    """The charge's own final answer (paid, or PAYERROR / closed) goes the way every channel outcome goes."""
    await apply_trade_result(cashier, attempt_id=attempt_id, result=result, source="payment_code")
