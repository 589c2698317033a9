"""The cashier service's error catalogue: stable codes, HTTP status, title, retryable.

Clients switch on `code`; titles are for people. The integration tests (tests/integration/flows)
make the API answer with these codes; `invalid_signature` is reserved for merchant-facing
verification (channel notifications answer in each channel's own failure format instead).
"""

from __future__ import annotations

from libs.common.errors import ErrorSpec

PAYMENT_NOT_FOUND = ErrorSpec("payment_not_found", 404, "No such payment")
REFUND_NOT_FOUND = ErrorSpec("refund_not_found", 404, "No such refund")
WEBHOOK_DELIVERY_NOT_FOUND = ErrorSpec("webhook_delivery_not_found", 404, "No such webhook delivery")
MERCHANT_NOT_FOUND = ErrorSpec("merchant_not_found", 404, "No such merchant")
# The platform suspended the merchant (gateway, docs/onboarding.md): its checkout pages and links take no payment.
MERCHANT_SUSPENDED = ErrorSpec("merchant_suspended", 403, "This merchant is suspended and takes no new payments")
DUPLICATE_MERCHANT_ORDER = ErrorSpec(
    "duplicate_merchant_order", 409, "This merchant order number was already used with a different request"
)
DUPLICATE_MERCHANT_REFUND = ErrorSpec(
    "duplicate_merchant_refund", 409, "This merchant refund number was already used with a different request"
)
REFUND_EXCEEDS_REMAINING = ErrorSpec(
    "refund_exceeds_remaining", 409, "The refund is larger than what remains refundable on the payment"
)
PAYMENT_NOT_REFUNDABLE = ErrorSpec("payment_not_refundable", 409, "Only a succeeded payment can be refunded")
PAYMENT_NOT_CLOSABLE = ErrorSpec("payment_not_closable", 409, "The payment is already final and cannot be closed")
UNSUPPORTED_SCENE = ErrorSpec("unsupported_scene", 422, "No channel available to this merchant supports this scene")
PAYMENT_CODE_INVALID = ErrorSpec(
    "payment_code_invalid", 422, "The scanned code is not a payment code any channel issues"
)
PAYMENT_CODE_NOT_SUPPORTED = ErrorSpec(
    "payment_code_not_supported", 422, "Payment codes of this channel cannot be charged here yet"
)
UNSUPPORTED_CURRENCY = ErrorSpec(
    "unsupported_currency", 422, "No channel available to this merchant takes this currency"
)
NO_ROUTE_AVAILABLE = ErrorSpec("no_route_available", 422, "No channel is configured for this merchant")
CHANNEL_UNAVAILABLE = ErrorSpec(
    "channel_unavailable", 503, "No channel could take the payment right now", retryable=True
)
CHANNEL_REFUSED = ErrorSpec("channel_refused", 402, "The channel refused the request")
INVALID_SIGNATURE = ErrorSpec("invalid_signature", 400, "The message signature could not be verified")
UNKNOWN_CHANNEL = ErrorSpec("unknown_channel", 404, "No connector exists for this channel")
INVALID_CHANNEL_CONFIG = ErrorSpec("invalid_channel_config", 422, "The channel configuration is not valid")
# A test configuration pointing at a real channel host, or a live one at a sandboxes (domain/modes.py).
CHANNEL_MODE_MISMATCH = ErrorSpec(
    "channel_mode_mismatch", 422, "Test configurations point only at sandboxes, live ones only at real channels"
)
CHANNEL_CONFIG_NOT_FOUND = ErrorSpec(
    "channel_config_not_found", 404, "The merchant has no configuration of this channel in this mode"
)
# A PATCH names the version it read: another change came first (read it again, then decide).
CHANNEL_CONFIG_CHANGED = ErrorSpec("channel_config_changed", 409, "The channel configuration changed meanwhile")
INSUFFICIENT_FUNDS = ErrorSpec("insufficient_funds", 402, "The payer's wallet balance is too low for this payment")
WALLET_NOT_FOUND = ErrorSpec("wallet_not_found", 422, "The payer has no wallet in this currency")
PAYMENT_NOT_CONFIRMABLE = ErrorSpec(
    "payment_not_confirmable", 409, "Only an open wallet payment can be confirmed by its payer"
)
PAYER_MISMATCH = ErrorSpec("payer_mismatch", 403, "The payment belongs to another payer")
EXPIRY_OUT_OF_RANGE = ErrorSpec("expiry_out_of_range", 422, "The expiry is in the past or too far ahead")
PURPOSE_NOT_ALLOWED = ErrorSpec(
    "purpose_not_allowed", 403, "Only the ledger service or the platform may create a wallet top-up payment"
)
REFUND_NOT_ALLOWED = ErrorSpec(
    "refund_not_allowed", 409, "This wallet top-up cannot be refunded (not credited to a wallet, or no ledger)"
)
REFUND_EXCEEDS_BALANCE = ErrorSpec(
    "refund_exceeds_balance", 409, "The top-up refund is larger than what is left of the holder's cash balance"
)
LEDGER_UNAVAILABLE = ErrorSpec(
    "ledger_unavailable", 503, "The ledger could not hold the wallet balance right now", retryable=True
)
SETTLEMENT_UNAVAILABLE = ErrorSpec(
    "settlement_unavailable", 503, "The split could not be checked with settlement right now", retryable=True
)
PROFIT_SHARING_UNSUPPORTED = ErrorSpec(
    "profit_sharing_unsupported", 422, "No channel available to this merchant can freeze funds for profit sharing"
)
PROFIT_SHARING_NOT_ENABLED = ErrorSpec(
    "profit_sharing_not_enabled", 409, "The payment was not created with profit_sharing: true"
)
PAYMENT_NOT_SUCCEEDED = ErrorSpec("payment_not_succeeded", 409, "Only a succeeded payment can be shared")
PROFIT_SHARING_ORDER_NOT_FOUND = ErrorSpec(
    "profit_sharing_order_not_found", 404, "No such profit-sharing order on this payment"
)
NOTIFY_URL_NOT_ALLOWED = ErrorSpec(
    "notify_url_not_allowed", 422, "The webhook URL must be https and must not point at an internal address"
)
MARKETING_UNAVAILABLE = ErrorSpec(
    "marketing_unavailable", 503, "The coupon could not be checked with marketing right now", retryable=True
)
COUPON_NOT_ALLOWED = ErrorSpec(
    "coupon_not_allowed", 422, "A coupon needs the payer (payer.user_id) and a purchase (purpose payment)"
)
WEBHOOK_ENDPOINT_NOT_FOUND = ErrorSpec("webhook_endpoint_not_found", 404, "No such webhook endpoint")
WEBHOOK_ENDPOINT_LIMIT_REACHED = ErrorSpec(
    "webhook_endpoint_limit_reached", 409, "The merchant already has the maximum number of webhook endpoints"
)

ERRORS: tuple[ErrorSpec, ...] = (
    PAYMENT_NOT_FOUND,
    REFUND_NOT_FOUND,
    WEBHOOK_DELIVERY_NOT_FOUND,
    MERCHANT_NOT_FOUND,
    MERCHANT_SUSPENDED,
    DUPLICATE_MERCHANT_ORDER,
    DUPLICATE_MERCHANT_REFUND,
    REFUND_EXCEEDS_REMAINING,
    PAYMENT_NOT_REFUNDABLE,
    PAYMENT_NOT_CLOSABLE,
    UNSUPPORTED_SCENE,
    UNSUPPORTED_CURRENCY,
    NO_ROUTE_AVAILABLE,
    CHANNEL_UNAVAILABLE,
    CHANNEL_REFUSED,
    INVALID_SIGNATURE,
    UNKNOWN_CHANNEL,
    INVALID_CHANNEL_CONFIG,
    CHANNEL_MODE_MISMATCH,
    EXPIRY_OUT_OF_RANGE,
    INSUFFICIENT_FUNDS,
    WALLET_NOT_FOUND,
    PAYMENT_NOT_CONFIRMABLE,
    PAYER_MISMATCH,
    PURPOSE_NOT_ALLOWED,
    REFUND_NOT_ALLOWED,
    REFUND_EXCEEDS_BALANCE,
    LEDGER_UNAVAILABLE,
    SETTLEMENT_UNAVAILABLE,
    PROFIT_SHARING_UNSUPPORTED,
    PROFIT_SHARING_NOT_ENABLED,
    PAYMENT_NOT_SUCCEEDED,
    PROFIT_SHARING_ORDER_NOT_FOUND,
    NOTIFY_URL_NOT_ALLOWED,
    MARKETING_UNAVAILABLE,
    COUPON_NOT_ALLOWED,
    WEBHOOK_ENDPOINT_NOT_FOUND,
    WEBHOOK_ENDPOINT_LIMIT_REACHED,
)
