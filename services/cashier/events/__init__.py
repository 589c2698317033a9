"""Events the cashier publishes on `cashier.payments` and `cashier.refunds` (schema: README.md).

Payloads are built here from table rows so every publisher sends the same fields: what the ledger,
settlement and routing need without reading our tables (merchant, amounts, channel, route, fee in
force, channel transaction id, attempt latency and outcome).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.cashier.domain.records import AttemptRecord, PaymentRecord, RefundRecord

PAYMENTS_TOPIC = "cashier.payments"
REFUNDS_TOPIC = "cashier.refunds"

PAYMENT_CREATED = "payment.created"
PAYMENT_ATTEMPT_FAILED = "payment.attempt_failed"
PAYMENT_SUCCEEDED = "payment.succeeded"
PAYMENT_FAILED = "payment.failed"
PAYMENT_CLOSED = "payment.closed"
REFUND_SUCCEEDED = "refund.succeeded"
REFUND_FAILED = "refund.failed"

FINAL_EVENT_TYPES = frozenset({PAYMENT_SUCCEEDED, PAYMENT_FAILED, PAYMENT_CLOSED, REFUND_SUCCEEDED, REFUND_FAILED})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def purpose_fields(payment: PaymentRecord) -> dict[str, Any]:
    """The split-check fields (docs/contracts.md §1), the same in the payment view and in every payment.* event."""
    return {
        "purpose": payment.purpose,
        "wallet_holder_id": payment.wallet_holder_id,
        "split": [dict(line) for line in payment.split] if payment.split is not None else None,
        "profit_sharing": payment.profit_sharing,
    }


def discount_fields(payment: PaymentRecord) -> dict[str, Any]:
    """A coupon redeemed on the payment (marketing's lock): the order's own amount, the discount and who funds
    it. `amount_minor` of a payment stays what the channel collects; these say what the order was worth."""
    coupon = payment.coupon
    return {
        "order_amount_minor": payment.order_amount_minor if coupon else payment.amount_minor,
        "discount_minor": payment.discount_minor if coupon else 0,
        "discount": dict(coupon) if coupon else None,
    }


def payment_event_data(payment: PaymentRecord, attempt: AttemptRecord | None = None, **extra: Any) -> dict[str, Any]:
    """Data of every payment.* event: the payment, and the attempt the event is about (if any)."""
    data: dict[str, Any] = {
        "payment_id": payment.id,
        "merchant_id": payment.merchant_id,
        "merchant_order_no": payment.merchant_order_no,
        # Test or live (docs/test-mode.md): a test payment moved no money; consumers must not book it as if it had.
        "livemode": payment.livemode,
        "status": payment.status,
        "amount_minor": payment.amount_minor,
        "currency": payment.currency,
        "scene": payment.scene,
        "channel": payment.channel,
        "route_id": payment.route_id,
        "fee_minor": payment.fee_minor,
        "fee_rate_bps": payment.fee_rate_bps,
        "platform_fee_minor": payment.platform_fee_minor,
        "channel_trade_no": payment.channel_trade_no,
        "succeeded_at": _iso(payment.succeeded_at),
        "late_success": payment.late_success,
        "expire_at": _iso(payment.expire_at),
        # Settlement picks the split rule by metadata.business_line, as the split check did (docs/contracts.md §1).
        "metadata": dict(payment.metadata or {}),
        # The platform user who pays, when the merchant names one (`payer.user_id`): marketing's points.
        "payer_user_id": (payment.payer or {}).get("user_id"),
        **purpose_fields(payment),
        **discount_fields(payment),
    }
    if attempt is not None:
        data["attempt"] = {
            "attempt_id": attempt.id,
            "seq": attempt.seq,
            "channel": attempt.channel,
            "route_id": attempt.route_id,
            "fee_minor": attempt.fee_minor,
            "out_trade_no": attempt.out_trade_no,
            "channel_trade_no": attempt.channel_trade_no,
            "status": attempt.status,
            "latency_ms": attempt.latency_ms,
            "failure_code": attempt.failure_code,
            "failure_message": attempt.failure_message,
            "retryable": attempt.retryable,
        }
    data.update(extra)
    return data


def refund_event_data(refund: RefundRecord, payment: PaymentRecord, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "refund_id": refund.id,
        "payment_id": refund.payment_id,
        "merchant_id": refund.merchant_id,
        "merchant_refund_no": refund.merchant_refund_no,
        "livemode": payment.livemode,  # the payment's mode (docs/test-mode.md)
        "status": refund.status,
        "amount_minor": refund.amount_minor,
        "currency": refund.currency,
        "channel": refund.channel,
        "route_id": payment.route_id,
        "attempt_id": refund.attempt_id,
        "channel_refund_no": refund.channel_refund_no,
        "channel_trade_no": payment.channel_trade_no,
        "payment_amount_minor": payment.amount_minor,
        "payment_fee_minor": payment.fee_minor,
        "payment_platform_fee_minor": payment.platform_fee_minor,
        "scene": payment.scene,
        "payment_refunded_minor": payment.refunded_minor,
        # A discounted payment's coupon funding: the ledger and settlement reverse the platform's subsidy in
        # proportion to the refunded part of `payment_amount_minor` (docs/ledger.md §3.13).
        "payment_discount": discount_fields(payment)["discount"],
        # The channel's own coupons (migration 0018): the ledger and settlement give back the merchant-funded part
        # the channel did not settle in proportion too (docs/ledger.md §3.15).
        "payment_channel_discount": payment.channel_discount,
        "failure_code": refund.failure_code,
        "succeeded_at": _iso(refund.succeeded_at),
    }
    data.update(extra)
    return data
