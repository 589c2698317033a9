"""The settlement service's error catalogue: stable codes, HTTP status, title, retryable."""

from __future__ import annotations

from libs.common.errors import ErrorSpec

SHARES_EXCEED_TOTAL = ErrorSpec("shares_exceed_total", 422, "Split shares add up to more than 100 %")
SHARE_EXCEEDS_RULE = ErrorSpec("share_exceeds_rule", 422, "An explicit split gives a receiver more than its rule share")
UNKNOWN_RECEIVER = ErrorSpec("unknown_receiver", 422, "The split names a receiver that is not registered")
INVALID_SHARE = ErrorSpec("invalid_share", 422, "A share needs exactly one of percent_bps or fixed_minor")
DUPLICATE_RECEIVER = ErrorSpec("duplicate_receiver", 422, "A receiver appears twice in one split rule")
RECEIVER_NOT_FOUND = ErrorSpec("receiver_not_found", 404, "No such split receiver")
SPLIT_RULE_NOT_FOUND = ErrorSpec("split_rule_not_found", 404, "No such split rule")
SPLIT_NOT_FOUND = ErrorSpec("split_not_found", 404, "No such split execution")
PAYMENT_RECORD_NOT_FOUND = ErrorSpec("payment_record_not_found", 404, "Settlement has no record of this payment")
RECONCILIATION_NOT_FOUND = ErrorSpec("reconciliation_not_found", 404, "No such reconciliation run")
BILL_UNAVAILABLE = ErrorSpec("bill_unavailable", 502, "The channel bill could not be fetched", retryable=True)
INVALID_CYCLE = ErrorSpec("invalid_cycle", 422, "The settlement cycle is not valid")
BATCH_NOT_FOUND = ErrorSpec("batch_not_found", 404, "No such settlement batch")
PAYOUT_EXCEEDS_SETTLED_BALANCE = ErrorSpec(
    "payout_exceeds_settled_balance", 422, "The payout is larger than the merchant's settled balance"
)
PAYOUT_NOT_FOUND = ErrorSpec("payout_not_found", 404, "No such payout")
PAYOUT_NOT_AWAITING_APPROVAL = ErrorSpec(
    "payout_not_awaiting_approval", 409, "The payout is not waiting for approval (already decided, or never held)"
)
WITHDRAWAL_NOT_FOUND = ErrorSpec("withdrawal_not_found", 404, "Settlement has no such wallet withdrawal")
INVALID_SIGNATURE = ErrorSpec("invalid_signature", 401, "The message signature could not be verified")
BANK_UNAVAILABLE = ErrorSpec("bank_unavailable", 503, "The bank did not answer", retryable=True)
LEDGER_UNAVAILABLE = ErrorSpec("ledger_unavailable", 503, "The ledger did not answer", retryable=True)
CASHIER_UNAVAILABLE = ErrorSpec("cashier_unavailable", 503, "The cashier did not answer", retryable=True)
RECONCILIATION_EXCEPTION_NOT_FOUND = ErrorSpec(
    "reconciliation_exception_not_found", 404, "No such reconciliation exception"
)
RECONCILIATION_EXCEPTION_RESOLVED = ErrorSpec(
    "reconciliation_exception_resolved", 409, "The reconciliation exception is already resolved"
)
RECONCILIATION_EXCEPTION_NOT_REQUERYABLE = ErrorSpec(
    "reconciliation_exception_not_requeryable", 422, "The exception names no Juhe payment to re-query"
)

ERRORS: tuple[ErrorSpec, ...] = (
    SHARES_EXCEED_TOTAL,
    SHARE_EXCEEDS_RULE,
    UNKNOWN_RECEIVER,
    INVALID_SHARE,
    DUPLICATE_RECEIVER,
    RECEIVER_NOT_FOUND,
    SPLIT_RULE_NOT_FOUND,
    SPLIT_NOT_FOUND,
    PAYMENT_RECORD_NOT_FOUND,
    RECONCILIATION_NOT_FOUND,
    BILL_UNAVAILABLE,
    INVALID_CYCLE,
    BATCH_NOT_FOUND,
    PAYOUT_EXCEEDS_SETTLED_BALANCE,
    PAYOUT_NOT_FOUND,
    PAYOUT_NOT_AWAITING_APPROVAL,
    WITHDRAWAL_NOT_FOUND,
    INVALID_SIGNATURE,
    BANK_UNAVAILABLE,
    LEDGER_UNAVAILABLE,
    CASHIER_UNAVAILABLE,
    RECONCILIATION_EXCEPTION_NOT_FOUND,
    RECONCILIATION_EXCEPTION_RESOLVED,
    RECONCILIATION_EXCEPTION_NOT_REQUERYABLE,
)
