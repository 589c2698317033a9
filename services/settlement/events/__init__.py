"""Events the settlement service publishes, and the events it consumes."""

from __future__ import annotations

SPLITS_TOPIC = "settlement.splits"
PAYOUTS_TOPIC = "settlement.payouts"
BATCHES_TOPIC = "settlement.batches"
SPLIT_POSTED = "split.posted"
PAYOUT_FINISHED = "payout.finished"
# data: batch_id, holder_id, currency, cycle_date, amount_minor, entry_count, amounts_by_kind,
# ledger_transfer_id, settled_at (the merchant's 2201 → 2202 of §3.5 is in the ledger)
BATCH_SETTLED = "batch.settled"
PROFIT_SHARING_TOPIC = SPLITS_TOPIC
# data: order_no, payment_id, split_id, merchant_id, channel, status, receivers, ledger_transfer_id
PROFIT_SHARING_FINISHED = "profit_sharing.finished"
WITHDRAWALS_TOPIC = PAYOUTS_TOPIC
# data: operation_id, holder_id, status, amount_minor, currency, failure_code
WITHDRAWAL_FINISHED = "withdrawal.finished"

# Consumed
LEDGER_ACCOUNTS_TOPIC = "ledger.accounts"
ACCOUNT_OPENED = "account.opened"
CASHIER_PAYMENTS_TOPIC = "cashier.payments"
CASHIER_REFUNDS_TOPIC = "cashier.refunds"
LEDGER_WALLET_TOPIC = "ledger.wallet"
WITHDRAWAL_REQUESTED = "withdrawal.requested"
PAYMENT_SUCCEEDED = "payment.succeeded"
PAYMENT_FAILED = "payment.failed"
PAYMENT_CLOSED = "payment.closed"
PAYMENT_ATTEMPT_FAILED = "payment.attempt_failed"
REFUND_SUCCEEDED = "refund.succeeded"
REFUND_FAILED = "refund.failed"
PAYMENT_EVENTS = frozenset({PAYMENT_SUCCEEDED, PAYMENT_FAILED, PAYMENT_CLOSED})
REFUND_EVENTS = frozenset({REFUND_SUCCEEDED, REFUND_FAILED})
COUPONS_TOPIC = "marketing.coupons"
COUPON_USED = "coupon.used"
COUPON_REDEMPTION_UNDONE = "coupon.redemption_undone"
COUPON_EVENTS = frozenset({COUPON_USED, COUPON_REDEMPTION_UNDONE})
