"""The cashier's money records as the store returns them: payments, attempts, refunds, profit-sharing orders.

Frozen on purpose: a record is what the database said at one moment. A state change is never an
assignment to a record but a named transition in the store (`store/payments.py`, `store/refunds.py`),
a compare-and-set on the status the record was read with that returns the new record (or None when a
concurrent writer moved it first). `store/codec.py` builds these from rows; one field per column, same
names, so the records read like the rows they replace.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.cashier.domain.payments import AttemptStatus, PaymentPurpose, PaymentScene, PaymentStatus
from services.cashier.domain.profit_sharing import ShareStatus
from services.cashier.domain.refunds import RefundStatus


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """One payment (table `payments`). Money in integer minor units of `currency`.

    `amount_minor` is what the channel is asked for (after a coupon); `order_amount_minor` the order's own
    amount when a coupon was redeemed. `refund_reserved_minor` counts succeeded and pending refunds,
    `refunded_minor` succeeded ones only (domain/refunds.py).
    """

    id: str
    merchant_id: str
    merchant_order_no: str
    request_sha256: str
    amount_minor: int
    currency: str
    description: str
    scene: PaymentScene
    payer: dict[str, Any]
    livemode: bool
    notify_url: str | None
    return_url: str | None
    metadata: dict[str, Any]
    status: PaymentStatus
    current_attempt_id: str | None
    channel: str | None
    route_id: str | None
    fee_minor: int | None
    fee_rate_bps: int | None
    platform_fee_minor: int
    purpose: PaymentPurpose
    wallet_holder_id: str | None
    split: list[dict[str, Any]] | None
    profit_sharing: bool
    candidates: list[dict[str, Any]] | None
    order_amount_minor: int | None
    discount_minor: int
    coupon: dict[str, Any] | None
    channel_discount: dict[str, Any] | None
    wallet_split: dict[str, int] | None
    channel_trade_no: str | None
    payer_action: dict[str, Any] | None
    expire_at: datetime
    succeeded_at: datetime | None
    closed_at: datetime | None
    failed_at: datetime | None
    failure_code: str | None
    failure_message: str | None
    late_success: bool
    refund_reserved_minor: int
    refunded_minor: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One channel tried for a payment (table `attempts`); `out_trade_no` is what the channel knows it by.

    A `created` attempt's `next_poll_at` is its driver's lease; a `processing` one's, its next status query.
    """

    id: str
    payment_id: str
    merchant_id: str
    seq: int
    channel: str
    route_id: str | None
    fee_minor: int | None
    fee_rate_bps: int | None
    out_trade_no: str
    status: AttemptStatus
    channel_trade_no: str | None
    payer_action: dict[str, Any] | None
    failure_code: str | None
    failure_message: str | None
    retryable: bool | None
    duplicate_success: bool
    latency_ms: int | None
    poll_count: int
    next_poll_at: datetime | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class RefundRecord:
    """One refund of a payment (table `refunds`), always of its payment's mode (`livemode`)."""

    id: str
    payment_id: str
    livemode: bool
    attempt_id: str
    merchant_id: str
    merchant_refund_no: str | None
    request_sha256: str
    channel: str
    amount_minor: int
    currency: str
    reason: str | None
    status: RefundStatus
    channel_refund_no: str | None
    wallet_split: dict[str, int] | None
    failure_code: str | None
    failure_message: str | None
    poll_count: int
    next_poll_at: datetime | None
    succeeded_at: datetime | None
    created_at: datetime
    updated_at: datetime
    request_key: str | None


@dataclass(frozen=True, slots=True)
class ShareOrderRecord:
    """One channel profit-sharing order of a paid payment (table `profit_sharing_orders`, docs/contracts.md §2).

    `receivers` are the request's lines, each with its `status` and `fail_reason` as the channel last said;
    `submitted_at` is set once the channel accepted the order (until then a create submits it again).
    """

    id: str
    payment_id: str
    merchant_id: str
    order_no: str
    request_sha256: str
    channel: str
    channel_trade_no: str
    out_order_no: str
    finish: bool
    status: ShareStatus
    receivers: list[dict[str, Any]]
    channel_order_id: str | None
    submitted_at: datetime | None
    failure_code: str | None
    failure_message: str | None
    created_at: datetime
    updated_at: datetime
