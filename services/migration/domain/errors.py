"""The migration service's error catalogue (API problems) and the reasons a source row is rejected."""

from __future__ import annotations

from libs.common.errors import FORBIDDEN, IDENTITY_INVALID, IDENTITY_MISSING, VALIDATION_FAILED, ErrorSpec

RUN_NOT_FOUND = ErrorSpec("run_not_found", 404, "No such migration run")
RUN_STATE_INVALID = ErrorSpec("run_state_invalid", 409, "The migration run cannot do this in its current state")
FINALISATION_REFUSED = ErrorSpec(
    "finalisation_refused", 409, "The run's totals do not reconcile (suspense not zero or control totals differ)"
)
CONTROL_MISSING = ErrorSpec("control_missing", 422, "A run with opening balances needs a control file")
CONTROL_INVALID = ErrorSpec("control_invalid", 422, "The control file is not valid")
SOURCE_INVALID = ErrorSpec("source_invalid", 422, "A source file cannot be read")
LEDGER_UNAVAILABLE = ErrorSpec("ledger_unavailable", 503, "The ledger did not answer; run again to resume", True)
MARKETING_UNAVAILABLE = ErrorSpec(
    "marketing_unavailable", 503, "Marketing did not answer; run (or reverse) again to resume", True
)
RUN_BUSY = ErrorSpec("run_busy", 409, "Another process is working on this run", True)
GATEWAY_UNAVAILABLE = ErrorSpec("gateway_unavailable", 503, "The gateway did not answer; provision again", True)
PROVISION_REFUSED = ErrorSpec("provision_refused", 422, "Merchant access cannot be provisioned as asked")

ERRORS: tuple[ErrorSpec, ...] = (
    RUN_NOT_FOUND,
    RUN_STATE_INVALID,
    FINALISATION_REFUSED,
    CONTROL_MISSING,
    CONTROL_INVALID,
    SOURCE_INVALID,
    LEDGER_UNAVAILABLE,
    MARKETING_UNAVAILABLE,
    RUN_BUSY,
    GATEWAY_UNAVAILABLE,
    PROVISION_REFUSED,
    VALIDATION_FAILED,
    FORBIDDEN,
    IDENTITY_MISSING,
    IDENTITY_INVALID,
)

# Why a row was rejected (stable, listed in docs/migration.md; the report counts by these).
MISSING_FIELD = "missing_field"
BAD_FIELD = "bad_field"
BAD_RESIDENT_ID = "bad_resident_id"
BAD_CREDIT_CODE = "bad_credit_code"
BAD_PHONE = "bad_phone"
BAD_BANK_CARD = "bad_bank_card"
BAD_AMOUNT = "bad_amount"
NEGATIVE_BALANCE = "negative_balance"
DUPLICATE_SOURCE_ID = "duplicate_source_id"
DUPLICATE_DOCUMENT = "duplicate_document"
UNKNOWN_PERSON = "unknown_person"
UNKNOWN_MERCHANT = "unknown_merchant"
HOLDER_CONFLICT = "holder_conflict"  # the ledger holds this id (or this document) with other data
LEDGER_REFUSED = "ledger_refused"  # the ledger refused the transfer (its code in the detail)
COUPON_EXPIRED = "coupon_expired"  # a coupon whose validity ended: nothing to migrate
MARKETING_REFUSED = "marketing_refused"  # marketing refused the coupon (its reason in the detail)
REJECTION_REASONS = (
    MISSING_FIELD,
    BAD_FIELD,
    BAD_RESIDENT_ID,
    BAD_CREDIT_CODE,
    BAD_PHONE,
    BAD_BANK_CARD,
    BAD_AMOUNT,
    NEGATIVE_BALANCE,
    DUPLICATE_SOURCE_ID,
    DUPLICATE_DOCUMENT,
    UNKNOWN_PERSON,
    UNKNOWN_MERCHANT,
    HOLDER_CONFLICT,
    LEDGER_REFUSED,
    COUPON_EXPIRED,
    MARKETING_REFUSED,
)
