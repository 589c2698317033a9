"""Events the settlement service publishes, and the events it consumes."""

from __future__ import annotations

SPLITS_TOPIC = "settlement.splits"
PAYOUTS_TOPIC = "settlement.payouts"
SPLIT_POSTED = "split.posted"
PAYOUT_FINISHED = "payout.finished"

# Consumed
LEDGER_ACCOUNTS_TOPIC = "ledger.accounts"
ACCOUNT_OPENED = "account.opened"
CASHIER_PAYMENTS_TOPIC = "cashier.payments"
CASHIER_REFUNDS_TOPIC = "cashier.refunds"
PAYMENT_SUCCEEDED = "payment.succeeded"
PAYMENT_FAILED = "payment.failed"
PAYMENT_CLOSED = "payment.closed"
PAYMENT_ATTEMPT_FAILED = "payment.attempt_failed"
REFUND_SUCCEEDED = "refund.succeeded"
REFUND_FAILED = "refund.failed"
PAYMENT_EVENTS = frozenset({PAYMENT_SUCCEEDED, PAYMENT_FAILED, PAYMENT_CLOSED})
REFUND_EVENTS = frozenset({REFUND_SUCCEEDED, REFUND_FAILED})
