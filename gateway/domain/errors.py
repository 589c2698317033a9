"""The gateway service's error catalogue: stable codes, HTTP status, title, retryable.

Clients (and the SDK) switch on `code`. Authentication failures are deliberately specific (a developer
integrating signatures needs to know *which* part is wrong); none of them reveals another merchant's data.
"""

from __future__ import annotations

from libs.common.errors import COMMON_ERRORS, IDEMPOTENCY_KEY_REUSED, INTERNAL_AUTH_ERRORS, ErrorSpec

AUTHENTICATION_REQUIRED = ErrorSpec("authentication_required", 401, "Send an Authorization header")
AUTHORIZATION_MALFORMED = ErrorSpec("authorization_malformed", 401, "The Authorization header cannot be parsed")
API_KEY_INVALID = ErrorSpec("api_key_invalid", 401, "Unknown API key")
API_KEY_REVOKED = ErrorSpec("api_key_revoked", 401, "This API key was revoked")
API_KEY_EXPIRED = ErrorSpec("api_key_expired", 401, "This API key expired (rotated)")
SIGNATURE_INVALID = ErrorSpec("signature_invalid", 401, "The request signature does not match")
TIMESTAMP_OUT_OF_WINDOW = ErrorSpec("timestamp_out_of_window", 401, "The request timestamp is too far from now")
NONCE_REUSED = ErrorSpec("nonce_reused", 401, "This nonce was already used")
TOKEN_INVALID = ErrorSpec("token_invalid", 401, "The bearer token is unknown, expired or revoked")
ROUTE_FORBIDDEN = ErrorSpec("route_forbidden", 403, "This identity may not call this endpoint")
# What libs/common/web.py answers for a 400 the framework raised itself (an unreadable form or body),
# which no catalogue names otherwise: listed so every code a client can meet is in x-error-codes.
HTTP_400 = ErrorSpec("http_400", 400, "The request could not be read")
API_VERSION_UNKNOWN = ErrorSpec("api_version_unknown", 400, "Unknown Juhe-Version: use one of the dated versions")
IDEMPOTENCY_KEY_MISSING = ErrorSpec("idempotency_key_missing", 400, "POST requests need an Idempotency-Key header")
IDEMPOTENCY_KEY_INVALID = ErrorSpec("idempotency_key_invalid", 400, "The Idempotency-Key header is not valid")
IDEMPOTENCY_KEY_IN_PROGRESS = ErrorSpec(
    "idempotency_key_in_progress", 409, "A request with this idempotency key is still in progress", retryable=True
)
RATE_LIMITED = ErrorSpec("rate_limited", 429, "Too many requests", retryable=True)
UPSTREAM_UNAVAILABLE = ErrorSpec("upstream_unavailable", 503, "The service behind this endpoint is unavailable", True)
UPSTREAM_TIMEOUT = ErrorSpec("upstream_timeout", 504, "The service behind this endpoint did not answer in time", True)
MERCHANT_NOT_FOUND = ErrorSpec("merchant_not_found", 404, "No such merchant")
API_KEY_NOT_FOUND = ErrorSpec("api_key_not_found", 404, "No such API key")
USER_NOT_FOUND = ErrorSpec("user_not_found", 404, "No such user")
MERCHANT_EXISTS = ErrorSpec("merchant_exists", 409, "A merchant with this id already exists")
USER_EXISTS = ErrorSpec("user_exists", 409, "A user with this id already exists")
RSA_PUBLIC_KEY_INVALID = ErrorSpec("rsa_public_key_invalid", 422, "The RSA public key is not a PEM RSA key ≥ 2048 bits")
WEB_CLIENT_INVALID = ErrorSpec("web_client_invalid", 401, "Only Juhe's web process may call this endpoint")
SIGN_IN_LINK_INVALID = ErrorSpec("sign_in_link_invalid", 401, "The sign-in link is unknown, expired or already used")
PAYMENT_PIN_NOT_SET = ErrorSpec("payment_pin_not_set", 409, "No payment PIN is set yet")
PAYMENT_PIN_ALREADY_SET = ErrorSpec("payment_pin_already_set", 409, "A payment PIN is set: change it instead")
PAYMENT_PIN_INCORRECT = ErrorSpec("payment_pin_incorrect", 403, "The payment PIN is incorrect")
PAYMENT_PIN_LOCKED = ErrorSpec("payment_pin_locked", 423, "Too many wrong payment PINs: locked for a while")
PAYMENT_PIN_TOO_SIMPLE = ErrorSpec("payment_pin_too_simple", 422, "A PIN may not be one digit repeated or a run")

# Console staff (gateway/flows/staff.py, docs/consoles.md).
CONSOLE_SIGN_IN_FAILED = ErrorSpec("console_sign_in_failed", 401, "Wrong e-mail, password or code")
CONSOLE_ACCOUNT_LOCKED = ErrorSpec("console_account_locked", 423, "Too many failed sign-ins: locked for a while")
CONSOLE_TOTP_REQUIRED = ErrorSpec("console_totp_required", 401, "Enter the code of your authenticator app")
CONSOLE_LINK_INVALID = ErrorSpec("console_link_invalid", 401, "The link is unknown, expired or already used")
CONSOLE_PERMISSION_DENIED = ErrorSpec("console_permission_denied", 403, "Your role does not allow this")
CONSOLE_PASSWORD_REJECTED = ErrorSpec("console_password_rejected", 422, "Choose a longer, less guessable password")
CONSOLE_TOTP_INVALID = ErrorSpec("console_totp_invalid", 422, "The code does not match: try the next one")
STAFF_NOT_FOUND = ErrorSpec("staff_not_found", 404, "No such staff member")
STAFF_EXISTS = ErrorSpec("staff_exists", 409, "Someone with this e-mail is already a staff member")
STAFF_ROLE_INVALID = ErrorSpec("staff_role_invalid", 422, "No such role, or not one you may give")
STAFF_LAST_OWNER = ErrorSpec("staff_last_owner", 409, "The last owner cannot be removed or demoted")
REFUND_REQUEST_NOT_FOUND = ErrorSpec("refund_request_not_found", 404, "No such refund request")
REFUND_REQUEST_STATE = ErrorSpec("refund_request_state", 409, "The refund request is not in a state for this")
REFUND_SELF_APPROVAL = ErrorSpec("refund_self_approval", 403, "The requester of a refund cannot approve it")

# Merchant onboarding and suspension (gateway/flows/onboarding.py, docs/onboarding.md).
MERCHANT_SUSPENDED = ErrorSpec("merchant_suspended", 403, "This merchant is suspended: reads and refunds only")
MERCHANT_STATUS_CONFLICT = ErrorSpec("merchant_status_conflict", 409, "The merchant is already in that state")
ONBOARDING_NOT_FOUND = ErrorSpec("onboarding_not_found", 404, "No such merchant onboarding")
ONBOARDING_STATE = ErrorSpec("onboarding_state", 409, "Only a rejected onboarding can be retried")
ONBOARDING_KYC_NOT_HELD = ErrorSpec(
    "onboarding_kyc_not_held", 409, "The onboarding's KYC check is not held for a review"
)
PARTNER_TEMPLATE_NOT_FOUND = ErrorSpec(
    "partner_template_not_found", 404, "The platform has no partner template for this channel and mode"
)

ERRORS: tuple[ErrorSpec, ...] = (
    AUTHENTICATION_REQUIRED,
    AUTHORIZATION_MALFORMED,
    API_KEY_INVALID,
    API_KEY_REVOKED,
    API_KEY_EXPIRED,
    SIGNATURE_INVALID,
    TIMESTAMP_OUT_OF_WINDOW,
    NONCE_REUSED,
    TOKEN_INVALID,
    ROUTE_FORBIDDEN,
    HTTP_400,
    API_VERSION_UNKNOWN,
    IDEMPOTENCY_KEY_MISSING,
    IDEMPOTENCY_KEY_INVALID,
    IDEMPOTENCY_KEY_REUSED,
    IDEMPOTENCY_KEY_IN_PROGRESS,
    RATE_LIMITED,
    UPSTREAM_UNAVAILABLE,
    UPSTREAM_TIMEOUT,
    MERCHANT_NOT_FOUND,
    API_KEY_NOT_FOUND,
    USER_NOT_FOUND,
    MERCHANT_EXISTS,
    USER_EXISTS,
    RSA_PUBLIC_KEY_INVALID,
    WEB_CLIENT_INVALID,
    SIGN_IN_LINK_INVALID,
    PAYMENT_PIN_NOT_SET,
    PAYMENT_PIN_ALREADY_SET,
    PAYMENT_PIN_INCORRECT,
    PAYMENT_PIN_LOCKED,
    PAYMENT_PIN_TOO_SIMPLE,
    CONSOLE_SIGN_IN_FAILED,
    CONSOLE_ACCOUNT_LOCKED,
    CONSOLE_TOTP_REQUIRED,
    CONSOLE_LINK_INVALID,
    CONSOLE_PERMISSION_DENIED,
    CONSOLE_PASSWORD_REJECTED,
    CONSOLE_TOTP_INVALID,
    STAFF_NOT_FOUND,
    STAFF_EXISTS,
    STAFF_ROLE_INVALID,
    STAFF_LAST_OWNER,
    REFUND_REQUEST_NOT_FOUND,
    REFUND_REQUEST_STATE,
    REFUND_SELF_APPROVAL,
    MERCHANT_SUSPENDED,
    MERCHANT_STATUS_CONFLICT,
    ONBOARDING_NOT_FOUND,
    ONBOARDING_STATE,
    ONBOARDING_KYC_NOT_HELD,
    PARTNER_TEMPLATE_NOT_FOUND,
)

# Every code a client of the public API can meet through the gateway (listed in /openapi.json).
PUBLIC_ERRORS: tuple[ErrorSpec, ...] = tuple(
    {spec.code: spec for spec in (*COMMON_ERRORS, *INTERNAL_AUTH_ERRORS, *ERRORS)}.values()
)
