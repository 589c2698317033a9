"""The ledger's error catalogue: one place for every business error code the ledger can return.

Why one catalogue: callers (cashier, settlement, marketing) branch on `code`, never on text, so codes are
stable snake_case strings; each carries its HTTP status, a title and whether retrying the same request
can help (e.g. `insufficient_funds` can succeed later after a top-up, `transfer_unbalanced` never will).
The vocabulary follows TigerBeetle's result codes where one exists.
"""

from __future__ import annotations

# The ledger answers with these two common codes too; re-exported (the `as` form is an explicit
# re-export under mypy strict) so the catalogue is complete here.
from libs.common.errors import IDEMPOTENCY_KEY_REUSED as IDEMPOTENCY_KEY_REUSED
from libs.common.errors import VALIDATION_FAILED as VALIDATION_FAILED
from libs.common.errors import ErrorSpec as ErrorSpec
from libs.common.errors import Problem


class LedgerError(Problem):
    """A business rule refused the request. Raised by the domain, rendered as problem+json by the API."""

    @property
    def code(self) -> str:
        return self.spec.code


# --- input shape ---------------------------------------------------------------------------------------
TOO_FEW_POSTINGS = ErrorSpec("too_few_postings", 422, "A transfer needs at least two postings")
TOO_MANY_POSTINGS = ErrorSpec("too_many_postings", 422, "A transfer has more postings than allowed")
AMOUNT_MUST_BE_POSITIVE = ErrorSpec("amount_must_be_positive", 422, "Amounts must be positive integers")
AMOUNT_EXCEEDS_MAXIMUM = ErrorSpec("amount_exceeds_maximum", 422, "Amount is above 2^63-1 minor units")
TRANSFER_UNBALANCED = ErrorSpec(
    "transfer_unbalanced", 422, "Debits and credits of a transfer must be equal per currency"
)
INVALID_CURRENCY = ErrorSpec("invalid_currency", 422, "Currency must be an ISO 4217 code")
CURRENCY_MISMATCH = ErrorSpec("currency_mismatch", 422, "Posting currency differs from the account's")
BOOKS_MIXED = ErrorSpec("books_mixed", 422, "A transfer's accounts must all be in one book (all live or all test)")
INVALID_TIMEOUT = ErrorSpec("invalid_timeout", 422, "Timeout applies to pending transfers only, in bounds")
BATCH_TOO_LARGE = ErrorSpec("batch_too_large", 422, "Too many transfers in one batch")
BATCH_EMPTY = ErrorSpec("batch_empty", 422, "A batch needs at least one transfer")
CHART_CODE_MISMATCH = ErrorSpec(
    "chart_code_mismatch", 422, "The code is not the chart's code of this kind (send the kind alone)"
)
ACCOUNT_CODE_REQUIRED = ErrorSpec("account_code_required", 422, "A kind outside the chart of accounts needs a code")
POST_AMOUNT_INVALID = ErrorSpec(
    "post_amount_invalid", 422, "Posted amounts must be balanced and not exceed the pending amounts"
)

# --- references ------------------------------------------------------------------------------------------
ACCOUNT_NOT_FOUND = ErrorSpec("account_not_found", 404, "No such account")
TRANSFER_NOT_FOUND = ErrorSpec("transfer_not_found", 404, "No such transfer")
CORRECTED_TRANSFER_NOT_FOUND = ErrorSpec(
    "corrected_transfer_not_found", 422, "The transfer this one corrects does not exist"
)

# --- account state ---------------------------------------------------------------------------------------
ACCOUNT_FROZEN = ErrorSpec("account_frozen", 409, "Account is frozen and refuses debits", retryable=True)
ACCOUNT_CLOSED = ErrorSpec("account_closed", 409, "Account is closed")
ACCOUNT_NOT_EMPTY = ErrorSpec(
    "account_not_empty", 409, "Only an account with zero balance and nothing pending can be closed"
)

# --- limits ----------------------------------------------------------------------------------------------
INSUFFICIENT_FUNDS = ErrorSpec(
    "insufficient_funds", 409, "Debits would exceed credits (plus credit limit)", retryable=True
)
CREDITS_EXCEED_DEBITS = ErrorSpec(
    "credits_exceed_debits", 409, "Credits would exceed debits (plus credit limit)", retryable=True
)
BALANCE_OVERFLOW = ErrorSpec("balance_overflow", 409, "A balance counter would exceed 2^63-1")

# --- idempotency and two-phase ---------------------------------------------------------------------------
PENDING_TRANSFER_ALREADY_POSTED = ErrorSpec(
    "pending_transfer_already_posted", 409, "The pending transfer was already posted"
)
PENDING_TRANSFER_ALREADY_VOIDED = ErrorSpec(
    "pending_transfer_already_voided", 409, "The pending transfer was already voided"
)
PENDING_TRANSFER_EXPIRED = ErrorSpec("pending_transfer_expired", 409, "The pending transfer has expired")
TRANSFER_NOT_PENDING = ErrorSpec("transfer_not_pending", 409, "Only a transfer created pending can be posted or voided")
LINKED_EVENT_FAILED = ErrorSpec(
    "linked_event_failed", 409, "Another transfer of the linked batch failed, so none was applied"
)

# --- infrastructure --------------------------------------------------------------------------------------
LEDGER_BUSY = ErrorSpec("ledger_busy", 503, "The ledger write queue is full, retry shortly", retryable=True)

ERRORS: tuple[ErrorSpec, ...] = tuple(v for v in list(globals().values()) if isinstance(v, ErrorSpec))
CATALOGUE = ERRORS
