"""Refunds: `pending → succeeded | failed`, never more than what remains refundable.

The refundable amount is `amount_minor - refund_reserved_minor`, where the reservation counts
succeeded **and pending** refunds: a refund takes its share when it is created (one atomic
compare-and-add on the payment row) and gives it back only if it fails. That is what makes ten
concurrent refunds of 20 on a payment of 100 end with exactly five accepted.
"""

from __future__ import annotations

import enum

from libs.common.errors import Problem
from services.cashier.domain.errors import PAYMENT_NOT_REFUNDABLE, REFUND_EXCEEDS_REMAINING
from services.cashier.domain.payments import PaymentStatus


class RefundStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


REFUND_TRANSITIONS: dict[RefundStatus, frozenset[RefundStatus]] = {
    RefundStatus.PENDING: frozenset({RefundStatus.SUCCEEDED, RefundStatus.FAILED}),
    RefundStatus.SUCCEEDED: frozenset(),
    RefundStatus.FAILED: frozenset(),
}


def can_move_refund(old: RefundStatus, new: RefundStatus) -> bool:
    return new in REFUND_TRANSITIONS[old]


def refundable_minor(*, amount_minor: int, refund_reserved_minor: int) -> int:
    return max(0, amount_minor - refund_reserved_minor)


def check_refund(
    *, payment_status: PaymentStatus, amount_minor: int, refund_reserved_minor: int, refund_minor: int
) -> None:
    """Raise the catalogued error when this refund cannot be accepted against the payment as read.

    The store repeats the amount check atomically in its UPDATE; this gives the precise error first.
    """
    if payment_status is not PaymentStatus.SUCCEEDED:
        raise Problem(PAYMENT_NOT_REFUNDABLE, f"the payment is {payment_status}", payment_status=payment_status.value)
    remaining = refundable_minor(amount_minor=amount_minor, refund_reserved_minor=refund_reserved_minor)
    if refund_minor > remaining:
        raise Problem(
            REFUND_EXCEEDS_REMAINING,
            f"refund of {refund_minor} exceeds the {remaining} that remains refundable",
            refundable_minor=remaining,
        )
