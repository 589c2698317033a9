"""The merchant-facing representation of payments, refunds and deliveries (API answers and webhooks).

One function per noun, used by both the API and the webhook bodies, so a merchant sees the same
object whether it asks or is told. Each reads a typed record (domain/records.py) as the store returned it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.cashier.domain.payer_actions import normalised_payer_action
from services.cashier.domain.payments import PaymentStatus
from services.cashier.domain.records import AttemptRecord, PaymentRecord, RefundRecord
from services.cashier.domain.refunds import refundable_minor
from services.cashier.events import discount_fields, purpose_fields


def attempt_view(row: AttemptRecord) -> dict[str, Any]:
    return {
        "id": row.id,
        "seq": row.seq,
        "channel": row.channel,
        "route_id": row.route_id,
        "status": row.status,
        "out_trade_no": row.out_trade_no,
        "channel_trade_no": row.channel_trade_no,
        "failure_code": row.failure_code,
        "failure_message": row.failure_message,
        "latency_ms": row.latency_ms,
        "created_at": row.created_at,
    }


def payment_view(row: PaymentRecord, attempts: Sequence[AttemptRecord] | None = None) -> dict[str, Any]:
    discount = discount_fields(row)
    view = {
        "id": row.id,
        "merchant_id": row.merchant_id,
        "merchant_order_no": row.merchant_order_no,
        "status": row.status,
        # The order's amount; `payable_minor` is what the payer pays at the channel (less a coupon's discount).
        "amount_minor": discount["order_amount_minor"],
        "payable_minor": row.amount_minor,
        "currency": row.currency,
        "description": row.description,
        "scene": row.scene,
        "channel": row.channel,
        "route_id": row.route_id,
        "fee_minor": row.fee_minor,
        "channel_trade_no": row.channel_trade_no,
        "payer_action": normalised_payer_action(row.payer_action),
        "expire_at": row.expire_at,
        "succeeded_at": row.succeeded_at,
        "closed_at": row.closed_at,
        "failed_at": row.failed_at,
        "failure_code": row.failure_code,
        "failure_message": row.failure_message,
        "late_success": row.late_success,
        "refunded_minor": row.refunded_minor,
        "refundable_minor": refundable_minor(
            amount_minor=row.amount_minor, refund_reserved_minor=row.refund_reserved_minor
        )
        if row.status == PaymentStatus.SUCCEEDED
        else 0,
        "metadata": row.metadata,
        **purpose_fields(row),
        "discount_minor": discount["discount_minor"],
        "discount": discount["discount"],
        "channel_discount": row.channel_discount,
        "wallet_split": row.wallet_split,
        "livemode": row.livemode,
        "created_at": row.created_at,
    }
    if attempts is not None:
        view["attempts"] = [attempt_view(a) for a in attempts]
    return view


def refund_view(row: RefundRecord) -> dict[str, Any]:
    return {
        "id": row.id,
        "payment_id": row.payment_id,
        "livemode": row.livemode,
        "merchant_refund_no": row.merchant_refund_no,
        "status": row.status,
        "amount_minor": row.amount_minor,
        "currency": row.currency,
        "reason": row.reason,
        "channel": row.channel,
        "channel_refund_no": row.channel_refund_no,
        "wallet_split": row.wallet_split,
        "failure_code": row.failure_code,
        "failure_message": row.failure_message,
        "succeeded_at": row.succeeded_at,
        "created_at": row.created_at,
    }


def delivery_view(row: Any, attempts: Sequence[Any] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": row.id,
        "payment_id": row.payment_id,
        "event_id": row.event_id,
        "event_type": row.event_type,
        "endpoint_id": row.endpoint_id,  # the webhook endpoint it goes to; null for a payment's notify_url
        "url": row.url,
        "status": row.status,
        "attempt_count": row.attempt_count,
        "next_attempt_at": row.next_attempt_at,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "delivered_at": row.delivered_at,
        "created_at": row.created_at,
    }
    if attempts is not None:
        view["attempts"] = [
            {
                "attempt_no": a.attempt_no,
                "status_code": a.status_code,
                "error": a.error,
                "duration_ms": a.duration_ms,
                "attempted_at": a.attempted_at,
            }
            for a in attempts
        ]
    return view
