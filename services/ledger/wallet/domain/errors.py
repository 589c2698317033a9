"""Wallet error catalogue (stable codes the cashier, the gateway and apps branch on)."""

from __future__ import annotations

from libs.common.errors import VALIDATION_FAILED, ErrorSpec, Problem

__all__ = ["VALIDATION_FAILED"]  # re-exported: the wallet answers bad input with the common code


class WalletError(Problem):
    """A wallet business rule refused the request; rendered as problem+json."""

    @property
    def code(self) -> str:
        return self.spec.code


INVALID_RESIDENT_ID = ErrorSpec("invalid_resident_id", 422, "Resident ID number is not valid (GB 11643)")
INVALID_CREDIT_CODE = ErrorSpec("invalid_credit_code", 422, "Unified social credit code is not valid (GB 32100)")
INVALID_BANK_CARD = ErrorSpec("invalid_bank_card", 422, "Bank card number is not valid (Luhn)")
INVALID_PHONE = ErrorSpec("invalid_phone", 422, "Phone number is not valid")
HOLDER_NOT_FOUND = ErrorSpec("holder_not_found", 404, "No such wallet holder")
HOLDER_EXISTS = ErrorSpec("holder_exists", 409, "A holder with this document already exists")
SUBACCOUNT_NOT_FOUND = ErrorSpec("subaccount_not_found", 404, "No such sub-account")
OPERATION_NOT_FOUND = ErrorSpec("operation_not_found", 404, "No such wallet operation")
KYC_STATE_INVALID = ErrorSpec("kyc_state_invalid", 409, "The KYC state does not allow this")
BAD_SIGNATURE = ErrorSpec("bad_signature", 401, "The callback signature is not valid")
ENTITLEMENT_DENIED = ErrorSpec("entitlement_denied", 403, "This holder may not do this with this sub-account")
LIMIT_EXCEEDED = ErrorSpec("limit_exceeded", 409, "The amount exceeds a single, daily or monthly limit")
PREPAID_WRONG_MERCHANT = ErrorSpec("prepaid_wrong_merchant", 403, "A prepaid card is usable only at its merchant")
BILL_NOT_FOUND = ErrorSpec("bill_not_found", 404, "No such bill")
NOTHING_TO_BILL = ErrorSpec("nothing_to_bill", 409, "Nothing is owed on the credit line")
OPERATION_STATE_INVALID = ErrorSpec("operation_state_invalid", 409, "The operation is not in a state that allows this")
POINTS_NOT_EXCHANGEABLE = ErrorSpec("points_not_exchangeable", 422, "Points must convert to a whole number of fen")
CREDIT_LINE_BELOW_DEBT = ErrorSpec("credit_line_below_debt", 409, "A credit line cannot be set below the debt")
REPAYMENT_TOO_LARGE = ErrorSpec("repayment_too_large", 422, "The repayment is larger than what the bill still owes")
IDENTITY_UNAVAILABLE = ErrorSpec(
    "identity_unavailable", 503, "The identity provider did not take the request", retryable=True
)
TOP_UP_ORDER_NOT_FOUND = ErrorSpec("top_up_order_not_found", 404, "No such top-up order")
TOP_UP_UNAVAILABLE = ErrorSpec("top_up_unavailable", 503, "Top-up through the cashier is not configured")
CASHIER_UNAVAILABLE = ErrorSpec(
    "cashier_unavailable",
    503,
    "The cashier did not answer; the same idempotency key is safe to retry",
    retryable=True,
)
TOP_UP_NOT_CREDITED = ErrorSpec(
    "top_up_not_credited", 409, "The top-up is not credited to a wallet (not yet, or it had no wallet to credit)"
)
TOP_UP_REFUND_EXCEEDS_BALANCE = ErrorSpec(
    "top_up_refund_exceeds_balance", 409, "The refund is larger than what is left of the cash balance"
)
# --- withdrawal payout rails (the `rail` and `payee` of a withdrawal) ------------------------------------
PAYEE_REQUIRED = ErrorSpec("payee_required", 422, "A withdrawal to WeChat change or an Alipay account needs a payee")
PAYEE_INVALID = ErrorSpec("payee_invalid", 422, "The payee does not fit the withdrawal's rail")
PAYEE_IDENTITY_TYPE_UNSUPPORTED = ErrorSpec(
    "payee_identity_type_unsupported", 422, "Alipay accounts are paid by their user id (ALIPAY_USER_ID) only"
)
PAYEE_NAME_MISMATCH = ErrorSpec(
    "payee_name_mismatch", 422, "A withdrawal goes to the holder's own account: the payee's name must be theirs"
)
